/**
 * What a case drives: a raw session to the peer under test, a frame log, and
 * helpers that fail with "expected … / observed …".
 */
import type { CloseInfo, RawSession } from "./raw-client.js";
import { Packr } from "msgpackr";
import {
  decodeCloud,
  decodeDevice,
  encodeCloud,
  encodeDevice,
  render,
  SUITE_MINOR,
  type Codec,
  type Frame,
} from "./wire.js";

const rawPackr = new Packr({ useRecords: false, moreTypes: false });

export class CheckFailure extends Error {
  constructor(
    readonly expected: string,
    readonly observed: string,
  ) {
    super(`expected ${expected}; observed ${observed}`);
  }
}

/** A feature the peer does not offer: the case is reported as "not offered". */
export class NotOffered extends Error {}

export type Received = Frame | { closed: CloseInfo } | undefined;

export function isClose(r: Received): r is { closed: CloseInfo } {
  return (
    r !== undefined &&
    (r as { closed?: unknown }).closed !== undefined &&
    typeof (r as { body?: unknown }).body !== "string"
  );
}

export class Probe {
  readonly log: string[] = [];
  private readonly t0 = performance.now();
  /** HelloAck of this session, once received. */
  ack: Frame | undefined;
  /** The binding of this session (set by the runner). */
  transport: "websocket" | "grpc" | "webtransport" | undefined;

  /** Bytes of every frame received, in order (for codec-level checks). */
  readonly raw: Uint8Array[] = [];
  /** The encoded size of each frame received. */
  readonly sizes = new WeakMap<Frame, number>();
  /** Frames that arrived on a WebTransport KV (unidirectional) stream. */
  readonly fromUni = new WeakSet<Frame>();
  private readonly encode: (f: Frame, c: Codec, unchecked?: boolean) => Uint8Array;
  private readonly decode: (b: Uint8Array, c: Codec) => Frame;

  /** `plays`: the role the suite plays on this session (the peer under test has the other). */
  constructor(
    readonly session: RawSession,
    readonly codec: Codec,
    readonly waitMs: number,
    readonly plays: "device" | "cloud" = "device",
  ) {
    this.encode = plays === "device" ? encodeDevice : encodeCloud;
    this.decode = plays === "device" ? decodeCloud : decodeDevice;
  }

  private stamp(): string {
    return `${(performance.now() - this.t0).toFixed(0).padStart(5)} ms`;
  }

  send(frame: Frame): void {
    this.log.push(`${this.stamp()} → ${render(frame)}`);
    this.session.send(this.encode(frame, this.codec));
  }

  /** Sends a frame the schema cannot hold (unknown enum values): encoded without validation. */
  sendUnchecked(frame: Frame): void {
    this.log.push(`${this.stamp()} → ${render(frame)} (unchecked)`);
    this.session.send(this.encode(frame, this.codec, true));
  }

  /** Sends a MessagePack map as given (keys and values the schema may not know). */
  sendRaw(map: Record<string, unknown>, what: string): void {
    this.sendBytes(rawPackr.pack(map), what);
  }

  /** Cloud role: a KvChunk frame, on the request's KV stream where the binding has one (§10.4). */
  sendKv(requestId: number, frame: Frame): void {
    this.log.push(`${this.stamp()} → ${render(frame)}`);
    const bytes = this.encode(frame, this.codec);
    const s = this.session as RawSession & { sendKv?: (id: number, f: Uint8Array) => void };
    if (s.sendKv) s.sendKv(requestId, bytes);
    else this.session.send(bytes);
  }

  /** Cloud role: ends the request's KV stream (WebTransport). */
  endKv(requestId: number): void {
    (this.session as RawSession & { endKv?: (id: number) => void }).endKv?.(requestId);
  }

  sendBytes(bytes: Uint8Array, what: string): void {
    this.log.push(`${this.stamp()} → ${what} (${bytes.length} raw bytes)`);
    this.session.send(bytes);
  }

  /** The next frame or close; undefined after `waitMs` of silence. Playing the cloud, Pings are answered on the way (PDD-CONN-019). */
  async recv(waitMs = this.waitMs): Promise<Received> {
    for (;;) {
      const r = await this.recvOne(waitMs);
      if (this.plays === "cloud" && r && !isClose(r) && (r as Frame).body === "ping") {
        const ping = (r as Frame).ping as { nonce?: string; sentAtUs?: string };
        this.send({
          pong: {
            nonce: ping.nonce ?? "0",
            pingSentAtUs: ping.sentAtUs ?? "0",
            receivedAtUs: String(Math.round(performance.now() * 1000)),
          },
        });
        continue;
      }
      return r;
    }
  }

  private async recvOne(waitMs: number): Promise<Received> {
    const v = await this.session.next(waitMs);
    if (v === undefined) return undefined;
    if (!(v instanceof Uint8Array)) {
      this.log.push(`${this.stamp()} ← closed ${JSON.stringify(v)}`);
      return { closed: v };
    }
    this.raw.push(v);
    let f: Frame;
    try {
      f = this.decode(v, this.codec);
    } catch (e) {
      this.log.push(`${this.stamp()} ← undecodable frame (${v.length} bytes): ${(e as Error).message}`);
      throw new CheckFailure(
        "a frame that decodes under the connection's codec (PDD-CODEC-001)",
        `undecodable bytes: ${(e as Error).message}`,
      );
    }
    this.log.push(`${this.stamp()} ← ${render(f)}${this.session.onUniStream?.(v) ? " (KV stream)" : ""}`);
    this.sizes.set(f, v.length);
    if (this.session.onUniStream?.(v)) this.fromUni.add(f);
    // The suite negotiates 1.SUITE_MINOR at most: every frame of the peer has a body this schema knows (PDD-VER-007, PDD-MSG-001).
    if (this.plays === "device" && !f.body)
      throw new CheckFailure(
        "only message types of the negotiated version (PDD-VER-007, PDD-MSG-001)",
        `a frame with no known body (${v.length} bytes)`,
      );
    return f;
  }

  /** Receives until `pred` matches a frame; fails on close or silence. */
  async until(pred: (f: Frame) => boolean, what: string, waitMs = this.waitMs): Promise<Frame> {
    for (;;) {
      const r = await this.recv(waitMs);
      if (r === undefined) throw new CheckFailure(what, `nothing within ${waitMs} ms`);
      if (isClose(r)) throw new CheckFailure(what, `connection closed (${r.closed.code} ${r.closed.reason})`);
      if (pred(r as Frame)) return r as Frame;
    }
  }

  /** Sends a valid Hello; with `await`, waits for and checks HelloAck. */
  async hello(
    opts: {
      await?: boolean;
      versions?: { major: number; minor: number }[];
      codecs?: string[];
      deviceModel?: Record<string, unknown>;
    } = {},
  ): Promise<Frame | undefined> {
    this.send({
      hello: {
        versions: opts.versions ?? [{ major: 1, minor: SUITE_MINOR }],
        codecs: opts.codecs ?? [this.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"],
        capabilities: { kvChunks: true, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"], refinement: true },
        deviceModel: opts.deviceModel,
        clientName: "pdd-conformance/0.1.0",
      },
    });
    if (opts.await === false) return undefined;
    const f = await this.until(() => true, "HelloAck as the first frame (PDD-CONN-003)");
    if (f.body !== "helloAck") throw new CheckFailure("HelloAck as the first frame (PDD-CONN-003)", render(f));
    this.ack = f;
    return f;
  }

  /** Every frame of request `id` up to and including its End. */
  async collect(id: number, waitMs = this.waitMs): Promise<Frame[]> {
    const out: Frame[] = [];
    for (;;) {
      const f = await this.until(
        (x) => requestIdOf(x) === id,
        `frames of request ${id} up to its End (PDD-ORD-003)`,
        waitMs,
      );
      out.push(f);
      if (f.body === "end") return out;
    }
  }

  /** After an End, no further frame of that request may come (PDD-ORD-003). */
  async quietFor(id: number, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      const r = await this.recv(Math.max(1, deadline - performance.now()));
      if (r === undefined || isClose(r)) return;
      if (requestIdOf(r as Frame) === id)
        throw new CheckFailure(`no frame for request ${id} after its End (PDD-ORD-003)`, render(r as Frame));
    }
  }

  close(): void {
    this.session.close();
  }
}

export function requestIdOf(f: Frame): number | undefined {
  const v = f.body ? (f[f.body] as { requestId?: number } | undefined) : undefined;
  return v?.requestId;
}

export function field<T = unknown>(f: Frame, path: string): T {
  let cur: unknown = f;
  for (const p of path.split(".")) cur = (cur as Record<string, unknown> | undefined)?.[p];
  return cur as T;
}
