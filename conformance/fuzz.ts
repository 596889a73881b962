/**
 * Structured fuzzing of a live cloud: valid frame sequences, mutated at the
 * object level (field values, request IDs, enums, order, duplication) and at
 * the byte level (flips, truncation, garbage), sent over a real binding. After
 * every case the cloud must still answer a Ping on that connection or close it
 * with a typed error — never hang — and a fresh connection must still be
 * served at the end.
 */
import { mutator, prng } from "../proto/index.js"; // a PRNG and byte mutator only: no codec of the peer under test
import { openGrpc, openWebSocket, openWebTransport, type RawSession } from "./raw-client.js";
import { decodeCloud, encodeDevice, type Codec, type Frame } from "./wire.js";

export interface FuzzOptions {
  target: string;
  codec: Codec;
  cases: number;
  seed: number;
  token?: string;
  ca?: string;
  certHash?: Uint8Array;
  /** ms to wait for the Pong that proves the cloud is alive after a case. */
  waitMs?: number;
  onProgress?: (done: number) => void;
}

export interface FuzzReport {
  cases: number;
  connections: number;
  /** How connections ended, by close code (a typed refusal each). */
  closes: Record<string, number>;
  /** Request errors received, by code. */
  errors: Record<string, number>;
  ms: number;
}

/** A case the cloud did not survive: what was sent, for the corpus. */
export class FuzzFailure extends Error {
  constructor(
    message: string,
    readonly input: { hex: string[]; note: string },
  ) {
    super(message);
  }
}

const INTS = [0, 1, 2, 7, 255, 256, 65_535, 65_536, 2 ** 31 - 1, 2 ** 32 - 1];
const ENUMS = [0, 1, 2, 3, 5, 18, 21, 99, 2 ** 31 - 1];

/** Templates: the frames a device sends after its Hello, with `ID` as the request ID. */
function templates(id: number): Frame[][] {
  const pre = (extra: Record<string, unknown> = {}) => ({ prefillRequest: { requestId: id, text: "The quick brown fox.", cloudTokenBudget: 3, ...extra } });
  return [
    [pre()],
    [pre({ targetTpotUs: 5000, cloudTokenBudget: 8 }), { takeover: { requestId: id, index: 1 } }],
    [pre(), { cancel: { requestId: id, code: "ERROR_CODE_CANCELLED" } }],
    [pre({ kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: 1024, initialCreditBytes: "4096" } }), { kvCredit: { requestId: id, bytes: "4096" } }],
    [pre({ refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.5 } })],
    [pre(), { progress: { requestId: id, prefilledTokens: 3, coveredIndex: 1, displayedIndex: 1 } }],
    [pre({ tokens: { ids: [1, 2, 3] }, text: undefined })],
    [pre({ sampling: { temperature: 0.7, topK: 5, topP: 0.9, seed: "42" }, maxTokens: 2 })],
    [{ ping: { nonce: "1" } }],
  ];
}

/** Replaces one scalar somewhere in `v` with an edge value. */
function mutateObject(v: unknown, r: () => number): unknown {
  if (Array.isArray(v)) return v.length === 0 ? v : v.map((x, i) => (i === Math.floor(r() * v.length) ? mutateObject(x, r) : x));
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    const k = keys[Math.floor(r() * keys.length)]!;
    return { ...(v as Record<string, unknown>), [k]: mutateObject((v as Record<string, unknown>)[k], r) };
  }
  if (typeof v === "number") return r() < 0.5 ? INTS[Math.floor(r() * INTS.length)] : ENUMS[Math.floor(r() * ENUMS.length)];
  if (typeof v === "string") {
    const choices = ["", "x".repeat(1 + Math.floor(r() * 5000)), "\u0000\uFFFF🙂", "18446744073709551615", "-1", "ERROR_CODE_NOPE"];
    return /^\d+$/.test(v) ? String(INTS[Math.floor(r() * INTS.length)]) : choices[Math.floor(r() * choices.length)];
  }
  return v;
}

async function open(o: FuzzOptions): Promise<RawSession> {
  const u = new URL(o.target);
  if (u.protocol === "ws:" || u.protocol === "wss:") return openWebSocket(o.target, o.codec, o);
  if (u.protocol === "grpc:" || u.protocol === "grpcs:") return openGrpc(o.target, o);
  return openWebTransport(o.target, o.codec, { certHash: o.certHash, token: o.token });
}

const hello = (codec: Codec): Frame => ({ hello: { versions: [{ major: 1, minor: 0 }], codecs: [codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"] } });

export async function fuzzCloud(o: FuzzOptions): Promise<FuzzReport> {
  const r = prng(o.seed);
  const mutateBytes = mutator(r);
  const waitMs = o.waitMs ?? 5000;
  const report: FuzzReport = { cases: 0, connections: 0, closes: {}, errors: {}, ms: 0 };
  const t0 = performance.now();
  let s: RawSession | undefined;
  let nextId = 1;
  let nonce = 1n;
  const fresh = async () => {
    s?.close();
    s = await open(o);
    report.connections++;
    nextId = 1;
    s.send(encodeDevice(hello(o.codec), o.codec));
  };
  for (let c = 0; c < o.cases; c++) {
    if (!s) await fresh();
    const ts = templates(nextId);
    let frames: Frame[] = ts[Math.floor(r() * ts.length)]!.map((f) => structuredClone(f));
    nextId += 1 + Math.floor(r() * 2);
    // Object-level mutations (most), then sequence and byte-level ones.
    const kind = r();
    if (kind < 0.5) frames = frames.map((f) => (r() < 0.6 ? (mutateObject(f, r) as Frame) : f));
    if (r() < 0.1) frames = [...frames, ...frames]; // duplicate
    if (r() < 0.1) frames.reverse(); // out of order
    if (r() < 0.03) frames.unshift(hello(o.codec)); // a second Hello
    let bytes: Uint8Array[];
    try {
      bytes = frames.map((f) => encodeDevice(f, o.codec, true));
    } catch {
      bytes = frames.map(() => Uint8Array.of());
    }
    if (kind >= 0.5 && kind < 0.8) bytes = bytes.map((b) => (r() < 0.7 ? mutateBytes(b, bytes) : b));
    const input = { hex: bytes.map((b) => Buffer.from(b).toString("hex")), note: `case ${c}, seed ${o.seed}, ${o.codec}` };
    for (const b of bytes) s!.send(b);
    // Liveness: a Ping must be answered, or the connection closed with a code.
    const n = nonce++;
    s!.send(encodeDevice({ ping: { nonce: String(n) } }, o.codec));
    for (;;) {
      const v = await s!.next(waitMs);
      if (v === undefined) throw new FuzzFailure(`no Pong and no close within ${waitMs} ms after case ${c}`, input);
      if (!(v instanceof Uint8Array)) {
        report.closes[String(v.code)] = (report.closes[String(v.code)] ?? 0) + 1;
        s = undefined;
        break;
      }
      let f: Frame;
      try {
        f = decodeCloud(v, o.codec);
      } catch (e) {
        throw new FuzzFailure(`the cloud sent an undecodable frame after case ${c}: ${(e as Error).message}`, input);
      }
      if (f.body === "error") {
        const code = String((f.error as { code?: string }).code);
        report.errors[code] = (report.errors[code] ?? 0) + 1;
      }
      if (f.body === "pong" && String((f.pong as { nonce?: string }).nonce) === String(n)) break;
    }
    report.cases++;
    if (c % 500 === 0) o.onProgress?.(c);
  }
  s?.close();
  // The cloud still serves a fresh connection.
  const check = await open(o);
  try {
    check.send(encodeDevice(hello(o.codec), o.codec));
    check.send(encodeDevice({ ping: { nonce: "99" } }, o.codec));
    for (;;) {
      const v = await check.next(waitMs);
      if (!(v instanceof Uint8Array)) throw new FuzzFailure("the cloud no longer serves a fresh connection after the run", { hex: [], note: "final liveness check" });
      if (decodeCloud(v, o.codec).body === "pong") break;
    }
  } finally {
    check.close();
  }
  report.ms = Math.round(performance.now() - t0);
  return report;
}

/** Replays one saved input (a corpus entry) on a fresh connection; throws FuzzFailure when the cloud does not survive it. */
export async function replayInput(o: Omit<FuzzOptions, "cases" | "seed">, input: { hex: string[]; note: string }): Promise<void> {
  const s = await open({ ...o, cases: 0, seed: 0 });
  try {
    s.send(encodeDevice(hello(o.codec), o.codec));
    for (const h of input.hex) s.send(Buffer.from(h, "hex"));
    s.send(encodeDevice({ ping: { nonce: "7" } }, o.codec));
    for (;;) {
      const v = await s.next(o.waitMs ?? 5000);
      if (v === undefined) throw new FuzzFailure(`no Pong and no close: ${input.note}`, input);
      if (!(v instanceof Uint8Array)) return;
      const f = decodeCloud(v, o.codec);
      if (f.body === "pong") return;
    }
  } finally {
    s.close();
  }
}
