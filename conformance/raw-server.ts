/**
 * The suite's own servers, for the device role: a device under test connects
 * to them and the suite plays the cloud. Like raw-client.ts they move bytes
 * only — no codec or binding code of the implementation under test.
 */
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { WebSocketServer, type WebSocket } from "ws";
import { Inbox, pumpFrames, WaitQueue, type RawSession } from "./raw-client.js";
import type { Codec } from "./wire.js";

export type ListenTransport = "websocket" | "grpc" | "webtransport";

/** A session accepted by the suite, with the codec the device chose. */
export interface AcceptedSession extends RawSession {
  codec: Codec;
  /** Sends a KvChunk frame: on WebTransport on the request's own uni stream (§10.4), else in band. */
  sendKv(requestId: number, frame: Uint8Array): void;
  /** Ends the request's KV stream (WebTransport; a no-op elsewhere). */
  endKv(requestId: number): void;
}

export interface RawServer {
  /** The URL a device connects to. */
  url: string;
  transport: ListenTransport;
  /** The next session a device opens; undefined after `timeoutMs`. */
  accept(timeoutMs: number): Promise<AcceptedSession | undefined>;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** ws://host:port, grpc://host:port or https://host:port/path (WebTransport). Port 0 picks one. */
  url: string;
  /** PEM certificate and key for WebTransport (which needs TLS). */
  tls?: { cert: string; key: string };
}

export async function listen(o: ListenOptions): Promise<RawServer> {
  const u = new URL(o.url);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port || 0);
  if (u.protocol === "ws:") return listenWebSocket(host, port);
  if (u.protocol === "grpc:") return listenGrpc(host, port);
  if (u.protocol === "https:") {
    if (!o.tls) throw new Error("a WebTransport listener needs a certificate");
    return listenWebTransport(host, port, u.pathname === "/" ? "/pdd/v1" : u.pathname, o.tls);
  }
  throw new Error(`the suite listens on ws://, grpc:// or https:// (WebTransport), not ${u.protocol}//`);
}

function listenWebSocket(host: string, port: number): Promise<RawServer> {
  const queue = new WaitQueue<AcceptedSession>();
  const wss = new WebSocketServer({
    host,
    port,
    perMessageDeflate: false,
    maxPayload: 256 << 20,
    handleProtocols: (offered) =>
      offered.has("pdd.v1.proto") ? "pdd.v1.proto" : offered.has("pdd.v1.msgpack") ? "pdd.v1.msgpack" : false,
  });
  wss.on("connection", (ws: WebSocket) => {
    const inbox = new Inbox();
    ws.on("message", (d: Buffer, isBinary: boolean) =>
      inbox.push(isBinary ? new Uint8Array(d) : { code: -1, reason: `a text message (${d.length} bytes)` }),
    );
    ws.on("close", (code: number, reason: Buffer) => inbox.push({ code, reason: reason.toString() }));
    ws.on("error", () => undefined);
    queue.push({
      codec: ws.protocol === "pdd.v1.msgpack" ? "msgpack" : "proto",
      send: (f) => ws.send(f),
      sendKv: (_id, f) => ws.send(f),
      endKv: () => undefined,
      next: (t) => inbox.next(t),
      close: (code?: number, reason?: string) => (code === undefined ? ws.terminate() : ws.close(code, reason)),
    });
  });
  return new Promise((resolve, reject) => {
    wss.once("error", reject);
    wss.once("listening", () => {
      const a = wss.address() as { port: number };
      resolve({
        url: `ws://${fmtHost(host)}:${a.port}/pdd/v1`,
        transport: "websocket",
        accept: (t) => queue.next(t),
        close: () =>
          new Promise<void>((r) => {
            for (const c of wss.clients) c.terminate();
            wss.close(() => r());
          }),
      });
    });
  });
}

async function listenGrpc(host: string, port: number): Promise<RawServer> {
  const queue = new WaitQueue<AcceptedSession>();
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 256 << 20,
    "grpc.max_send_message_length": 256 << 20,
  });
  const handler = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const inbox = new Inbox();
    call.on("data", (d: Buffer) => inbox.push(new Uint8Array(d)));
    call.on("end", () => inbox.push({ code: 0, reason: "the device half-closed the call" }));
    call.on("cancelled", () => inbox.push({ code: 1, reason: "the device cancelled the call" }));
    call.on("error", () => undefined);
    let ended = false;
    queue.push({
      codec: "proto",
      send: (f) => void (ended || call.write(Buffer.from(f))),
      sendKv: (_id, f) => void (ended || call.write(Buffer.from(f))),
      endKv: () => undefined,
      next: (t) => inbox.next(t),
      close: (code?: number, reason?: string) => {
        if (ended) return;
        ended = true;
        if (code === undefined || code === 0) call.end();
        else call.emit("error", { code, details: reason ?? "" });
      },
    });
  };
  server.register(
    "/pdd.v1.PdDeviceService/Session",
    handler as never,
    (b: Buffer) => b,
    (b: Buffer) => b,
    "bidi",
  );
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${fmtHost(host)}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    url: `grpc://${fmtHost(host)}:${bound}`,
    transport: "grpc",
    accept: (t) => queue.next(t),
    close: async () => server.forceShutdown(),
  };
}

interface WtStreamLike {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

async function listenWebTransport(
  host: string,
  port: number,
  path: string,
  tls: { cert: string; key: string },
): Promise<RawServer> {
  const { loadWebTransport } = await import("../transports/index.js"); // the library only, not the binding
  const { wt } = await loadWebTransport();
  const queue = new WaitQueue<AcceptedSession>();
  const server = new wt.Http2Server({
    port,
    host,
    secret: randomBytes(16).toString("hex"),
    cert: tls.cert,
    privKey: tls.key,
    reliability: "reliableOnly",
    initialStreamFlowControlWindow: 16 << 20,
    initialSessionFlowControlWindow: 64 << 20,
  } as never) as unknown as {
    startServer(): void;
    stopServer(): void;
    ready: Promise<void>;
    address(): { port: number } | null;
    setRequestCallback(cb: (a: { header: Record<string, string> }) => Promise<unknown>): void;
    sessionStream(path: string, o: unknown): ReadableStream<unknown>;
  };
  const codecs = new Map<string, Codec>();
  server.setRequestCallback(async ({ header }) => {
    const p = header[":path"] ?? "/";
    if (p.split("?")[0] !== path) return { status: 404 };
    const codec = new URL(p, "https://x").searchParams.get("codec") === "msgpack" ? "msgpack" : "proto";
    const ticket = randomBytes(8).toString("hex");
    codecs.set(ticket, codec);
    return { status: 200, path, userData: { ticket } };
  });
  server.startServer();
  await server.ready;
  const reader = server.sessionStream(path, { noAutoPaths: true }).getReader();
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      void acceptWt(value as never);
    }
  })();
  async function acceptWt(session: {
    userData?: { ticket?: string };
    ready: Promise<void>;
    closed: Promise<{ closeCode?: number; reason?: string }>;
    close(i?: unknown): void;
    incomingBidirectionalStreams: ReadableStream<WtStreamLike>;
    createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
  }): Promise<void> {
    const codec = codecs.get(session.userData?.ticket ?? "") ?? "proto";
    try {
      await session.ready;
      const { value: control } = await session.incomingBidirectionalStreams.getReader().read();
      if (!control) return;
      const inbox = new Inbox();
      void pumpFrames(
        control.readable,
        (f) => inbox.push(f),
        (why) => inbox.push({ code: -2, reason: why }),
      );
      session.closed.then(
        (i) => inbox.push({ code: i?.closeCode ?? 0, reason: i?.reason ?? "" }),
        (e: unknown) => inbox.push({ code: 0, reason: String((e as Error)?.message ?? e) }),
      );
      const writer = control.writable.getWriter();
      let closing = false;
      const kv = new Map<number, Promise<WritableStreamDefaultWriter<Uint8Array>>>();
      const kvWriter = (id: number) => {
        let w = kv.get(id);
        if (!w) {
          // A device that already finished (it took over at 0) has closed the session, and the library then
          // throws at once: as a rejection, that is a frame the device will not read, like on the other bindings.
          w = Promise.resolve()
            .then(() => session.createUnidirectionalStream())
            .then((s) => s.getWriter());
          kv.set(id, w);
        }
        return w;
      };
      queue.push({
        codec,
        send: (f) => void writer.write(prefixed(f)).catch(() => undefined),
        sendKv: (id, f) =>
          void kvWriter(id)
            .then((w) => w.write(prefixed(f)))
            .catch(() => undefined),
        endKv: (id) =>
          void kv
            .get(id)
            ?.then((w) => w.close())
            .catch(() => undefined),
        next: (t) => inbox.next(t),
        close: (code?: number, reason?: string) => {
          if (closing) return; // closing twice makes the library loop until std::bad_alloc
          closing = true;
          try {
            session.close({ closeCode: code ?? 0, reason: reason ?? "" });
          } catch {
            // already closed
          }
        },
      });
    } catch {
      // the session failed before its control stream opened
    }
  }
  return {
    url: `https://${fmtHost(host)}:${server.address()?.port ?? port}${path}`,
    transport: "webtransport",
    accept: (t) => queue.next(t),
    close: async () => server.stopServer(),
  };
}

function prefixed(f: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(f.length);
  return Buffer.concat([h, Buffer.from(f)]);
}

const fmtHost = (h: string) => (h.includes(":") ? `[${h}]` : h);
