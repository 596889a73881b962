/**
 * Raw device-side sessions that can misbehave below the protocol: a WebSocket
 * that never reads (its socket paused), a WebTransport session with small
 * windows whose streams are never read, sessions that never open their
 * control stream, and device-opened unidirectional streams.
 */
import WebSocket from "ws";
import { applyBackpressureFix } from "../../transports/webtransport/backpressure-fix.js";
import { loadWebTransport } from "../../transports/index.js";
import { tick } from "./wait.js";

export interface RawDevice {
  /** Sends one frame's bytes (the binding's delimiting added). */
  send(frame: Uint8Array): void;
  /** Resolves once everything sent has left this process (or the session is gone). */
  flushed(): Promise<void>;
  /** Leaves without any close: TCP reset (WebSocket), session dropped (WebTransport). */
  vanish(): void;
  /** Resumes reading and reports frames (a flooder that reads). */
  read?(onFrame: (f: Uint8Array) => void): void;
}

/** A WebSocket whose socket is paused from the start: the cloud's frames pile up in the kernel, then in the cloud. */
export async function nonReadingWebSocket(
  url: string,
  codec: "proto" | "msgpack",
  o: { token?: string; paused?: boolean } = {},
): Promise<RawDevice & { ws: WebSocket }> {
  const ws = new WebSocket(url, [`pdd.v1.${codec}`], {
    perMessageDeflate: false,
    headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
  });
  ws.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  if (o.paused !== false) ws.pause();
  return {
    ws,
    send: (f) => ws.send(f, { binary: true, compress: false }),
    flushed: async () => {
      while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 5));
    },
    vanish: () => ws.terminate(),
    read(onFrame) {
      ws.on("message", (d: Buffer) => onFrame(new Uint8Array(d)));
      ws.resume();
    },
  };
}

interface WtStreamPair {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}
export interface WtSessionLike {
  ready: Promise<void>;
  closed: Promise<unknown>;
  close(info?: { closeCode?: number; reason?: string }): void;
  createBidirectionalStream(): Promise<WtStreamPair>;
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
}

/** A WebTransport session (over HTTP/2) with the library's small windows: 16 KiB per stream. */
export async function wtSession(
  url: string,
  codec: "proto" | "msgpack",
  certSha256: Uint8Array,
  o: { token?: string; windowBytes?: number } = {},
): Promise<WtSessionLike> {
  const { wt } = await loadWebTransport();
  const u = new URL(url);
  u.searchParams.set("codec", codec);
  if (o.token) u.searchParams.set("access_token", o.token);
  const window = o.windowBytes ?? 16 << 10;
  const session = new wt.WebTransport(u.toString(), {
    forceReliable: true,
    serverCertificateHashes: [{ algorithm: "sha-256", value: certSha256 }],
    initialStreamFlowControlWindow: window,
    streamShouldAutoTuneReceiveWindow: false,
    initialSessionFlowControlWindow: Math.max(window, 64 << 10),
    sessionShouldAutoTuneReceiveWindow: false,
  } as never) as unknown as WtSessionLike;
  session.closed.catch(() => undefined);
  await session.ready;
  return session;
}

const prefixed = (f: Uint8Array): Buffer => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(f.length);
  return Buffer.concat([h, Buffer.from(f)]);
};

/** A WebTransport device whose control stream is never read: the windows push back on the cloud. */
export async function nonReadingWebTransport(
  url: string,
  codec: "proto" | "msgpack",
  certSha256: Uint8Array,
  o: { token?: string } = {},
): Promise<RawDevice & { session: WtSessionLike }> {
  const session = await wtSession(url, codec, certSha256, o);
  const control = await session.createBidirectionalStream();
  applyBackpressureFix(control); // without it the library reads into an unbounded queue and never pushes back
  const writer = control.writable.getWriter();
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;
  return {
    session,
    send: (f) => {
      chain = writer.write(prefixed(f)).catch(() => undefined);
    },
    flushed: async () => {
      // A write on a session the cloud closed never settles: the close ends the wait too.
      await Promise.race([chain, session.closed.catch(() => undefined)]);
      await tick();
    },
    vanish: () => {
      if (closed) return; // closing twice loops the library (see transports/webtransport/stream.ts)
      closed = true;
      try {
        session.close({ closeCode: 0, reason: "" });
      } catch {
        // already closed
      }
    },
    read(onFrame) {
      void (async () => {
        const r = control.readable.getReader();
        let buf = Buffer.alloc(0);
        for (;;) {
          const { value, done } = await r.read().catch(() => ({ value: undefined, done: true }));
          if (done || !value) return;
          buf = Buffer.concat([buf, Buffer.from(value)]);
          while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
            onFrame(new Uint8Array(buf.subarray(4, 4 + buf.readUInt32BE(0))));
            buf = buf.subarray(4 + buf.readUInt32BE(0));
          }
        }
      })();
    },
  };
}
