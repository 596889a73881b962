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
import type { HttpServerInit } from "@fails-components/webtransport";

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
    const cancelled = new Promise<void>((r) => call.once("cancelled", () => r()));
    call.on("cancelled", () => inbox.push({ code: 1, reason: "the device cancelled the call" }));
    call.on("error", () => undefined);
    let ended = false;
    queue.push({
      codec: "proto",
      cancelled,
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
  server.register<Buffer, Buffer>(
    "/pdd.v1.PdDeviceService/Session",
    handler,
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

/** The part of a library session the suite uses. */
interface WtSessionLike {
  userData?: { ticket?: string };
  ready: Promise<void>;
  closed: Promise<{ closeCode?: number; reason?: string }>;
  close(i?: { closeCode?: number; reason?: string }): void;
  incomingBidirectionalStreams: ReadableStream<{
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  }>;
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
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
  const init: HttpServerInit = {
    port,
    host,
    secret: randomBytes(16).toString("hex"),
    cert: tls.cert,
    privKey: tls.key,
    reliability: "reliableOnly",
    defaultDatagramsReadableMode: "bytes",
    initialStreamFlowControlWindow: 16 << 20,
    initialSessionFlowControlWindow: 64 << 20,
  };
  const server = new wt.Http2Server(init);
  const codecs = new Map<string, Codec>();
  server.setRequestCallback(async ({ header }: { header: Record<string, string> }) => {
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
  const acceptAll = async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      // The library types a session by its WebTransport API; the ticket is in the userData it adds.
      const session: WtSessionLike = value;
      const codec = codecs.get(session.userData?.ticket ?? "") ?? "proto";
      void acceptWt(session, codec, queue); // never rejects: a failed session is dropped inside
    }
  };
  acceptAll().catch(() => undefined); // reads are caught above; nothing else can throw
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

/** Waits for the session's control stream and queues the session; drops a session that fails first. */
async function acceptWt(session: WtSessionLike, codec: Codec, queue: WaitQueue<AcceptedSession>): Promise<void> {
  try {
    await session.ready;
    const { value: control } = await session.incomingBidirectionalStreams.getReader().read();
    if (!control) return;
    const inbox = new Inbox();
    pumpFrames(
      control.readable,
      (f) => inbox.push(f),
      (why) => inbox.push({ code: -2, reason: why }),
    ).catch((e: unknown) => inbox.push({ code: -2, reason: String(e) }));
    session.closed.then(
      (i) => inbox.push({ code: i?.closeCode ?? 0, reason: i?.reason ?? "" }),
      (e: unknown) => inbox.push({ code: 0, reason: String((e as Error)?.message ?? e) }),
    );
    queue.push({ codec, next: (t) => inbox.next(t), ...wtSenders(session, control.writable.getWriter()) });
  } catch {
    // the session failed before its control stream opened
  }
}

/** Frames go on the control stream, a request's KvChunks on its own uni stream (§10.4); write errors are the peer's loss. */
function wtSenders(
  session: WtSessionLike,
  writer: WritableStreamDefaultWriter<Uint8Array>,
): Pick<AcceptedSession, "send" | "sendKv" | "endKv" | "close"> {
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
  return {
    send: (f) => {
      writer.write(prefixed(f)).catch(() => undefined);
    },
    sendKv: (id, f) => {
      kvWriter(id)
        .then((w) => w.write(prefixed(f)))
        .catch(() => undefined);
    },
    endKv: (id) => {
      kv.get(id)
        ?.then((w) => w.close())
        .catch(() => undefined);
    },
    close: (code?: number, reason?: string) => {
      if (closing) return; // closing twice makes the library loop until std::bad_alloc
      closing = true;
      try {
        session.close({ closeCode: code ?? 0, reason: reason ?? "" });
      } catch {
        // already closed
      }
    },
  };
}
