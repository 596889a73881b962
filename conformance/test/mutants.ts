/**
 * Deliberately broken clouds: the reference cloud behind a WebSocket proxy
 * that breaks exactly one rule. Used to show the suite is not vacuous.
 * @internal test support
 */
import { WebSocketServer, WebSocket } from "ws";
import { CloudFrameType, DeviceFrameType } from "../wire.js";

type Msg = Record<string, unknown>;
export interface Mutant {
  name: string;
  /** The case (by id) that must fail against this mutant. */
  mustFail: string;
  /** Rewrites a cloud→device frame: return the frames to send instead (none = drop). */
  down?: (f: Msg, state: Record<string, unknown>) => Msg[];
  /** Rewrites a device→cloud frame. */
  up?: (f: Msg, state: Record<string, unknown>, bytes: Buffer) => Msg[] | "crash";
  /** Holds a cloud→device frame this many ms before it goes on (the frames after it wait too, in order). */
  hold?: (f: Msg, state: Record<string, unknown>) => number;
}

const decode = (t: typeof CloudFrameType, b: Buffer) => t.decode(b) as unknown as Msg;
const body = (f: Msg) => (f as { body?: string }).body;

export const MUTANTS: Mutant[] = [
  {
    name: "skips an index",
    mustFail: "cloud.request.served",
    down: (f, s) => {
      if (body(f) === "tokenBatch" && !s.skipped) {
        s.skipped = true;
        return [];
      }
      return [f];
    },
  },
  {
    name: "ignores takeover",
    mustFail: "cloud.takeover.race",
    up: (f) => (body(f) === "takeover" ? [] : [f]),
  },
  {
    name: "sends a bad KV checksum",
    mustFail: "cloud.kv.stream",
    down: (f) => {
      if (body(f) === "kvChunk") (f.kvChunk as Msg).crc32 = ((((f.kvChunk as Msg).crc32 as number) ^ 1) >>> 0) as never;
      return [f];
    },
  },
  {
    name: "answers an unknown major version",
    mustFail: "cloud.version.unknown-major",
    up: (f) => {
      if (body(f) === "hello") (f.hello as Msg).versions = [{ major: 1, minor: 0 }] as never;
      return [f];
    },
  },
  {
    name: "sends End before the last batch",
    mustFail: "cloud.request.served",
    down: (f, s) => {
      if (body(f) === "tokenBatch") {
        if (s.held) {
          const prev = s.held as Msg;
          s.held = f;
          return [prev];
        }
        s.held = f;
        return [];
      }
      if (body(f) === "end" && s.held) {
        const held = s.held as Msg;
        s.held = undefined;
        return [f, held];
      }
      return [f];
    },
  },
  {
    name: "never frees on cancel",
    mustFail: "cloud.cancel",
    up: (f) => (body(f) === "cancel" ? [] : [f]),
  },
  {
    name: "leaks another request's tokens",
    mustFail: "cloud.request.served",
    down: (f, s) => {
      if (body(f) === "tokenBatch" && !s.leaked) {
        s.leaked = true;
        (f.tokenBatch as Msg).requestId = (((f.tokenBatch as Msg).requestId as number) + 1) as never;
      }
      return [f];
    },
  },
  {
    name: "reports the tokens sent, not k, in End{TAKEN_OVER}.token_count",
    mustFail: "cloud.takeover.race",
    down: (f) => {
      const e = f.end as Msg | undefined;
      if (body(f) === "end" && e?.reason === 2)
        e.tokenCount = Number((e.usage as Msg | undefined)?.sentTokens ?? e.tokenCount) as never;
      return [f];
    },
  },
  {
    name: "crashes on an oversize frame",
    mustFail: "cloud.oversize",
    up: (f, _s, bytes) => (bytes.length > 1 << 20 ? "crash" : [f]),
  },
];

/** Starts a proxy in front of `upstream` (a ws:// URL) applying `m`; proto codec only. */
export async function startMutant(
  upstream: string,
  m: Mutant,
  token?: string,
): Promise<{ url: string; close: () => Promise<void> }> {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    maxPayload: 64 << 20,
    handleProtocols: (p) => (p.has("pdd.v1.proto") ? "pdd.v1.proto" : false),
  });
  wss.on("connection", (client) => {
    const state: Record<string, unknown> = {};
    const server = new WebSocket(upstream, ["pdd.v1.proto"], {
      maxPayload: 64 << 20,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const pending: Buffer[] = [];
    server.on("open", () => {
      for (const b of pending.splice(0)) server.send(b);
    });
    client.on("message", (b: Buffer) => {
      let out: Buffer[] = [b];
      if (m.up) {
        let f: Msg;
        try {
          f = decode(DeviceFrameType, b);
        } catch {
          f = {};
        }
        const r = m.up(f, state, b);
        if (r === "crash") {
          client.terminate();
          server.terminate();
          return;
        }
        out = r.map((x) => Buffer.from(DeviceFrameType.encode(DeviceFrameType.fromObject(x)).finish()));
        if (Object.keys(f).length === 0) out = [b];
      }
      for (const o of out) server.readyState === WebSocket.OPEN ? server.send(o) : pending.push(o);
    });
    // Frames held (Mutant.hold) keep their order: everything after one waits behind it, the close too.
    let held: Promise<void> | undefined;
    const forward = (go: () => void, ms = 0) => {
      if (ms > 0) held = (held ?? Promise.resolve()).then(() => new Promise((r) => setTimeout(r, ms)));
      if (held) held = held.then(go);
      else go();
    };
    server.on("message", (b: Buffer) => {
      const f = decode(CloudFrameType, b);
      const ms = m.hold?.(f, state) ?? 0;
      const out = m.down ? m.down(f, state) : [f];
      forward(() => {
        for (const o of out) client.send(CloudFrameType.encode(CloudFrameType.fromObject(o)).finish());
      }, ms);
    });
    client.on("close", () => server.close());
    server.on("close", (code, reason) =>
      forward(
        () =>
          client.readyState === WebSocket.OPEN &&
          void client.close(code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000, reason),
      ),
    );
    server.on("error", () => client.terminate());
    client.on("error", () => server.terminate());
  });
  await new Promise((r) => wss.once("listening", r));
  const port = (wss.address() as { port: number }).port;
  return { url: `ws://127.0.0.1:${port}/pdd`, close: () => new Promise((r) => wss.close(() => r())) };
}
