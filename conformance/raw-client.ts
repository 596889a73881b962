/**
 * Raw byte sessions to a cloud under test, one per binding, written for the
 * suite: it must be able to send bytes no correct peer would send.
 */
import * as grpc from "@grpc/grpc-js";
import WebSocket from "ws";
import type { Codec } from "./wire.js";

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface RawSession {
  send(frame: Uint8Array): void;
  /** The next frame's bytes, or the close of the session; undefined after `timeoutMs` of silence. */
  next(timeoutMs: number): Promise<Uint8Array | CloseInfo | undefined>;
  /** Without a code: an abrupt close. With one: the binding's close (WebSocket close code, gRPC status, session code). */
  close(code?: number, reason?: string): void;
  /** WebTransport: whether these frame bytes arrived on a unidirectional (KV) stream. */
  onUniStream?(frame: Uint8Array): boolean;
  /** WebTransport: how many bidirectional streams the peer opened (a cloud must open none, PDD-WT-002). */
  peerBidiStreams?(): number;
  /** WebSocket: sends a text message; the selected subprotocol. */
  sendText?(text: string): void;
  protocol?: string;
  /** WebTransport: writes bytes on the control stream as they are (no length prefix), and ends it. */
  sendUnframed?(bytes: Uint8Array): void;
  endControl?(): void;
  /** gRPC: ends the request stream (a half-close); the call stays open for the server's messages. */
  halfClose?(): void;
  /** gRPC, the suite's server: resolves when the device cancels the call (RST_STREAM), even after its half-close. */
  cancelled?: Promise<void>;
  /** WebTransport: opens a unidirectional stream, or another bidirectional one, and writes `bytes` on it. */
  openStream?(kind: "uni" | "bidi", bytes: Uint8Array): void;
}

/** Items queued as they arrive, for one consumer that waits with a timeout. */
export class WaitQueue<T> {
  private items: T[] = [];
  private waiter: ((v: T) => void) | undefined;
  push(v: T): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(v);
    } else this.items.push(v);
  }
  /** The next item; undefined after `timeoutMs` without one. */
  next(timeoutMs: number): Promise<T | undefined> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.waiter = (x) => {
        clearTimeout(t);
        resolve(x);
      };
    });
  }
}

/** Frames and a close, queued as they arrive; nothing after the close. */
export class Inbox extends WaitQueue<Uint8Array | CloseInfo> {
  private closed = false;
  override push(v: Uint8Array | CloseInfo): void {
    if (this.closed) return;
    if (!(v instanceof Uint8Array)) this.closed = true;
    super.push(v);
  }
}

/** An opening handshake the server refused, with its HTTP status. */
export class Refused extends Error {
  constructor(readonly status: number) {
    super(`the server answered the upgrade with HTTP ${status}`);
  }
}

export async function openWebSocket(
  url: string,
  codec: Codec,
  opts: { ca?: string; token?: string; protocols?: string[] } = {},
): Promise<RawSession> {
  const ws = new WebSocket(url, opts.protocols ?? [`pdd.v1.${codec}`], {
    ca: opts.ca,
    perMessageDeflate: false,
    headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
  });
  const inbox = new Inbox();
  ws.on("message", (d: Buffer) => inbox.push(new Uint8Array(d)));
  ws.on("close", (code: number, reason: Buffer) => inbox.push({ code, reason: reason.toString() }));
  ws.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      reject(new Refused(res.statusCode ?? 0));
      res.resume();
      ws.terminate();
    });
  });
  return {
    send: (f) => ws.send(f),
    sendText: (t) => ws.send(t),
    protocol: ws.protocol,
    next: (t) => inbox.next(t),
    close: () => ws.terminate(),
  };
}

/** gRPC through @grpc/grpc-js with identity serializers: bytes in, bytes out. */
/** One channel per target: each session is a call on it, as gRPC clients do (a channel per call leaks channels). */
const channels = new Map<string, grpc.Client>();

export async function openGrpc(url: string, opts: { ca?: string; token?: string } = {}): Promise<RawSession> {
  const u = new URL(url);
  const key = `${u.protocol}//${u.host}|${opts.ca ?? ""}`;
  let client = channels.get(key);
  if (!client) {
    const creds =
      u.protocol === "grpcs:"
        ? grpc.credentials.createSsl(opts.ca ? Buffer.from(opts.ca) : undefined)
        : grpc.credentials.createInsecure();
    client = new grpc.Client(`${u.hostname}:${u.port}`, creds);
    channels.set(key, client);
  }
  const md = new grpc.Metadata();
  if (opts.token) md.set("authorization", `Bearer ${opts.token}`);
  const call = client.makeBidiStreamRequest(
    "/pdd.v1.PdDeviceService/Session",
    (b: Buffer) => b,
    (b: Buffer) => b,
    md,
  );
  const inbox = new Inbox();
  call.on("data", (d: Buffer) => inbox.push(new Uint8Array(d)));
  call.on("status", (s: grpc.StatusObject) => inbox.push({ code: s.code, reason: s.details }));
  call.on("error", () => undefined);
  return {
    send: (f) => call.write(Buffer.from(f)),
    next: (t) => inbox.next(t),
    close: () => call.cancel(),
    halfClose: () => call.end(),
  };
}

/**
 * gRPC's response headers, read with node:http2 (gRPC libraries hide
 * grpc-encoding): one Session call that sends `frame` with the given
 * grpc-accept-encoding, closed once the headers came.
 */
export async function grpcResponseHeaders(
  url: string,
  frame: Uint8Array,
  opts: { ca?: string; token?: string; acceptEncoding: string },
): Promise<Record<string, string | string[] | undefined>> {
  const { connect } = await import("node:http2");
  const u = new URL(url);
  const session = connect(`${u.protocol === "grpcs:" ? "https" : "http"}://${u.host}`, opts.ca ? { ca: opts.ca } : {});
  session.on("error", () => undefined);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": "/pdd.v1.PdDeviceService/Session",
      "content-type": "application/grpc+proto",
      te: "trailers",
      "grpc-accept-encoding": opts.acceptEncoding,
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
    });
    req.on("error", () => undefined);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(frame.length, 1);
    req.write(Buffer.concat([prefix, frame]));
    return await new Promise((resolve, reject) => {
      req.once("response", (h) => resolve(h as Record<string, string>));
      req.once("close", () => reject(new Error("the call closed without response headers")));
      setTimeout(() => reject(new Error("no response headers within 5 s")), 5000).unref();
    });
  } finally {
    session.destroy();
  }
}

/** How a raw HTTP/2 call to the gRPC server ended: its HTTP status and grpc-status, or "open" when it was still open. */
export type GrpcCallEnd = { http: number; grpcStatus: string | undefined } | "open";

/**
 * One raw HTTP/2 call with the given path, content type and grpc-encoding,
 * sending `frame` in one length-prefixed message without ending the request
 * stream: how it ended within `waitMs` (PDD-GRPC-007). A server that leaves
 * the call open is reported as "open".
 */
export async function grpcRawCall(
  url: string,
  frame: Uint8Array,
  opts: { ca?: string; token?: string; path: string; contentType: string; encoding?: string; waitMs: number },
): Promise<GrpcCallEnd> {
  const { connect } = await import("node:http2");
  const u = new URL(url);
  const session = connect(`${u.protocol === "grpcs:" ? "https" : "http"}://${u.host}`, opts.ca ? { ca: opts.ca } : {});
  session.on("error", () => undefined);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": opts.path,
      "content-type": opts.contentType,
      te: "trailers",
      ...(opts.encoding ? { "grpc-encoding": opts.encoding } : {}),
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
    });
    req.on("error", () => undefined);
    const prefix = Buffer.alloc(5);
    prefix[0] = opts.encoding && opts.encoding !== "identity" ? 1 : 0; // the compressed flag for a non-identity encoding
    prefix.writeUInt32BE(frame.length, 1);
    req.write(Buffer.concat([prefix, frame]));
    let http = 0;
    let grpcStatus: string | undefined;
    req.on("response", (h) => {
      http = Number(h[":status"]);
      grpcStatus = h["grpc-status"] as string | undefined;
    });
    req.on("trailers", (t) => (grpcStatus ??= t["grpc-status"] as string | undefined));
    req.resume();
    return await new Promise<GrpcCallEnd>((resolve) => {
      const timer = setTimeout(() => resolve("open"), opts.waitMs);
      const ended = () => {
        clearTimeout(timer);
        resolve({ http, grpcStatus });
      };
      req.once("end", ended);
      req.once("close", ended);
    });
  } finally {
    session.destroy();
  }
}

/**
 * WebTransport (over HTTP/2 here): the control stream and every KV stream,
 * deframed by the suite's own 4-byte length prefix reader (spec §9.4).
 */
export async function openWebTransport(
  url: string,
  codec: Codec,
  opts: { certHash?: Uint8Array; token?: string; codecParam?: string; noControl?: boolean } = {},
): Promise<RawSession> {
  const { loadWebTransport } = await import("../transports/index.js"); // the library only, not the binding
  const { wt } = await loadWebTransport();
  const u = new URL(url);
  u.searchParams.set("codec", opts.codecParam ?? codec);
  if (opts.token) u.searchParams.set("access_token", opts.token);
  // Typed by the library as the W3C WebTransportOptions, the constructor also reads forceReliable
  // and the flow-control windows: passed as a variable, not a literal.
  const init = {
    forceReliable: true,
    serverCertificateHashes: opts.certHash ? [{ algorithm: "sha-256", value: opts.certHash }] : undefined,
    initialStreamFlowControlWindow: 16 << 20,
    initialSessionFlowControlWindow: 64 << 20,
  };
  const session: {
    ready: Promise<void>;
    closed: Promise<{ closeCode?: number; reason?: string }>;
    close(i?: { closeCode?: number; reason?: string }): void;
    createBidirectionalStream(): Promise<{
      readable: ReadableStream<Uint8Array>;
      writable: WritableStream<Uint8Array>;
    }>;
    createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
    incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
    incomingBidirectionalStreams: ReadableStream<unknown>;
  } = new wt.WebTransport(u.toString(), init);
  // A refused session rejects both ready and closed: closed is handled below, once ready resolved.
  session.closed.catch(() => undefined);
  await session.ready;
  const inbox = new Inbox();
  // Without a control stream (PDD-WT-006's timeout): a stand-in that carries nothing.
  const control = opts.noControl
    ? { readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>() }
    : await session.createBidirectionalStream();
  const writer = control.writable.getWriter();
  const fromUni = new WeakSet<Uint8Array>();
  let bidi = 0;
  let closing = false;
  // The session's close must not overtake frames still being read off the control stream.
  const controlDone = pumpFrames(control.readable, (f) => inbox.push(f));
  void (async () => {
    const r = session.incomingUnidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await r.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      void pumpFrames(value, (f) => {
        fromUni.add(f);
        inbox.push(f);
      });
    }
  })();
  void (async () => {
    const r = session.incomingBidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await r.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      bidi++;
    }
  })();
  const settle = () => Promise.race([controlDone, new Promise((r) => setTimeout(r, 1000))]);
  session.closed.then(
    async (i) => {
      await settle();
      inbox.push({ code: i?.closeCode ?? 0, reason: i?.reason ?? "" });
    },
    async (e: unknown) => {
      await settle();
      inbox.push({ code: 0, reason: String((e as Error)?.message ?? e) });
    },
  );
  return {
    send: (f) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(f.length);
      void writer.write(Buffer.concat([h, Buffer.from(f)])).catch(() => undefined);
    },
    next: (t) => inbox.next(t),
    close: () => {
      if (closing) return; // a second close of a closed session makes the library loop (std::bad_alloc)
      closing = true;
      try {
        session.close({ closeCode: 0, reason: "" });
      } catch {
        // already closed
      }
    },
    sendUnframed: (b) => void writer.write(Buffer.from(b)).catch(() => undefined),
    endControl: () => void writer.close().catch(() => undefined),
    openStream: (kind, bytes) => void openStream(session, kind, bytes).catch(() => undefined),
    onUniStream: (f) => fromUni.has(f),
    peerBidiStreams: () => bidi,
  };
}

/** Opens a stream a device must not open (PDD-WT-006) and writes `bytes` on it. */
async function openStream(
  session: {
    createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
    createBidirectionalStream(): Promise<{ writable: WritableStream<Uint8Array> }>;
  },
  kind: "uni" | "bidi",
  bytes: Uint8Array,
): Promise<void> {
  const w =
    kind === "uni" ? await session.createUnidirectionalStream() : (await session.createBidirectionalStream()).writable;
  await w.getWriter().write(Buffer.from(bytes));
}

/** Reads 4-byte length-prefixed frames (spec §9.4) off a stream; reports a stream that ends inside a frame. */
export async function pumpFrames(
  readable: ReadableStream<Uint8Array>,
  onFrame: (f: Uint8Array) => void,
  onBad?: (why: string) => void,
): Promise<void> {
  const reader = readable.getReader();
  let buf = Buffer.alloc(0);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        if (buf.length > 0) onBad?.(`the stream ended inside a frame (${buf.length} bytes left)`);
        return;
      }
      buf = Buffer.concat([buf, Buffer.from(value)]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        onFrame(new Uint8Array(buf.subarray(4, 4 + n)));
        buf = buf.subarray(4 + n);
      }
    }
  } catch {
    // stream reset or session closed
  }
}
