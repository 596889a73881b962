/**
 * Structured fuzzing of a live cloud: valid frame sequences, mutated at the
 * object level (field values, request IDs, enums, order, duplication) and at
 * the byte level (flips, truncation, garbage), sent over a real binding. After
 * every case the cloud must still answer a Ping on that connection or close it
 * with a typed error — never hang. After every `checkEvery` cases, and at the
 * end, the fuzz connection is closed and a normal device must get the answer
 * the cloud gave before any fuzzing, in its normal time, with nothing held
 * (fuzz-liveness.ts): a cloud that still Pongs but has stopped serving fails.
 */
import { prng } from "../shared/index.js";
import { baseline, checkLive, FuzzFailure, type LivenessOptions } from "./fuzz-liveness.js";
import { mutator } from "./mutator.js";
import { openGrpc, openWebSocket, openWebTransport, type RawSession } from "./raw-client.js";
import { decodeCloud, encodeDevice, type Codec, type Frame } from "./wire.js";

export { FuzzFailure, type FuzzCause } from "./fuzz-liveness.js";

export interface FuzzOptions {
  target: string;
  codec: Codec;
  cases: number;
  seed: number;
  token?: string;
  ca?: string;
  certHash?: Uint8Array;
  /** ms to wait for the Pong after a case, and for the baseline answer. */
  waitMs?: number;
  /**
   * The full-answer liveness check after every this many cases (and always at the end); default
   * 250: on the tiny model an answer costs ~1/10 of 250 cases, so the run stays about as fast.
   */
  checkEvery?: number;
  /** The cloud's Prometheus endpoint: each check also wants 0 sequences active and 0 queued. */
  metrics?: string;
  /** A check's deadline is max(this, 10 × the baseline answer's time); default 5000 ms. */
  floorMs?: number;
  onProgress?: (done: number) => void;
}

export interface FuzzReport {
  cases: number;
  connections: number;
  /** How connections ended, by close code (a typed refusal each). */
  closes: Record<string, number>;
  /** Request errors received, by code. */
  errors: Record<string, number>;
  /** Full-answer liveness checks passed, and how long the baseline answer took. */
  checks: number;
  baselineMs: number;
  ms: number;
}

const INTS = [0, 1, 2, 7, 255, 256, 65_535, 65_536, 2 ** 31 - 1, 2 ** 32 - 1];
const ENUMS = [0, 1, 2, 3, 5, 18, 21, 99, 2 ** 31 - 1];

/** Templates: the frames a device sends after its Hello, with `ID` as the request ID. */
function templates(id: number): Frame[][] {
  const pre = (extra: Record<string, unknown> = {}) => ({
    prefillRequest: { requestId: id, text: "The quick brown fox.", cloudTokenBudget: 3, ...extra },
  });
  return [
    [pre()],
    [pre({ targetTpotUs: 5000, cloudTokenBudget: 8 }), { takeover: { requestId: id, index: 1 } }],
    [pre(), { cancel: { requestId: id, code: "ERROR_CODE_CANCELLED" } }],
    [
      pre({ kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: 1024, initialCreditBytes: "4096" } }),
      { kvCredit: { requestId: id, bytes: "4096" } },
    ],
    [pre({ refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.5 } })],
    [pre(), { progress: { requestId: id, prefilledTokens: 3, coveredIndex: 1, displayedIndex: 1 } }],
    [pre({ tokens: { ids: [1, 2, 3] }, text: undefined })],
    [pre({ sampling: { temperature: 0.7, topK: 5, topP: 0.9, seed: "42" }, maxTokens: 2 })],
    [{ ping: { nonce: "1" } }],
  ];
}

/** Replaces one scalar somewhere in `v` with an edge value. */
export function mutateObject(v: unknown, r: () => number): unknown {
  if (Array.isArray(v))
    return v.length === 0 ? v : v.map((x, i) => (i === Math.floor(r() * v.length) ? mutateObject(x, r) : x));
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    const k = keys[Math.floor(r() * keys.length)]!;
    return { ...(v as Record<string, unknown>), [k]: mutateObject((v as Record<string, unknown>)[k], r) };
  }
  if (typeof v === "number")
    return r() < 0.5 ? INTS[Math.floor(r() * INTS.length)] : ENUMS[Math.floor(r() * ENUMS.length)];
  if (typeof v === "string") {
    const choices = [
      "",
      "x".repeat(1 + Math.floor(r() * 5000)),
      "\u0000\uFFFF🙂",
      "18446744073709551615",
      "-1",
      "ERROR_CODE_NOPE",
    ];
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

const hello = (codec: Codec): Frame => ({
  hello: { versions: [{ major: 1, minor: 0 }], codecs: [codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"] },
});

export async function fuzzCloud(o: FuzzOptions): Promise<FuzzReport> {
  const r = prng(o.seed);
  const mutateBytes = mutator(r);
  const waitMs = o.waitMs ?? 5000;
  const every = o.checkEvery ?? 250;
  const live: LivenessOptions = { codec: o.codec, open: () => open(o), metrics: o.metrics, floorMs: o.floorMs };
  const t0 = performance.now();
  const base = await baseline(live, waitMs);
  const report: FuzzReport = { cases: 0, connections: 0, closes: {}, errors: {}, checks: 0, baselineMs: 0, ms: 0 };
  report.baselineMs = Math.round(base.ms);
  let s: RawSession | undefined;
  const state = { nextId: 1, nonce: 1n };
  for (let c = 0; c < o.cases; c++) {
    if (!s) {
      s = await open(o);
      report.connections++;
      state.nextId = 1;
      s.send(encodeDevice(hello(o.codec), o.codec));
    }
    const bytes = oneCase(o.codec, r, mutateBytes, state);
    const input = {
      hex: bytes.map((b) => Buffer.from(b).toString("hex")),
      note: `case ${c}, seed ${o.seed}, ${o.codec}`,
    };
    for (const b of bytes) s.send(b);
    if (!(await pongOrClose(s, o.codec, state.nonce++, waitMs, report, input))) s = undefined;
    report.cases++;
    if (c % 500 === 0) o.onProgress?.(c);
    if ((c + 1) % every === 0 || c === o.cases - 1) {
      // The attacks' connection goes, so whatever it held must be freed; then a normal device is served.
      s?.close();
      s = undefined;
      await checkLive(live, base, `liveness check after case ${c}, seed ${o.seed}, ${o.codec}`);
      report.checks++;
    }
  }
  report.ms = Math.round(performance.now() - t0);
  return report;
}

/** One case's bytes: a template's frames, mutated at the object, sequence or byte level. */
function oneCase(
  codec: Codec,
  r: () => number,
  mutateBytes: ReturnType<typeof mutator>,
  state: { nextId: number },
): Uint8Array[] {
  const ts = templates(state.nextId);
  let frames: Frame[] = ts[Math.floor(r() * ts.length)]!.map((f) => structuredClone(f));
  state.nextId += 1 + Math.floor(r() * 2);
  // Object-level mutations (most), then sequence and byte-level ones.
  const kind = r();
  if (kind < 0.5) frames = frames.map((f) => (r() < 0.6 ? (mutateObject(f, r) as Frame) : f));
  if (r() < 0.1) frames = [...frames, ...frames]; // duplicate
  if (r() < 0.1) frames.reverse(); // out of order
  if (r() < 0.03) frames.unshift(hello(codec)); // a second Hello
  let bytes: Uint8Array[];
  try {
    bytes = frames.map((f) => encodeDevice(f, codec, true));
  } catch {
    bytes = frames.map(() => Uint8Array.of());
  }
  if (kind >= 0.5 && kind < 0.8) bytes = bytes.map((b) => (r() < 0.7 ? mutateBytes(b, bytes) : b));
  return bytes;
}

/** Sends a Ping; true once its Pong arrives, false when the cloud closed the connection (with a code). */
async function pongOrClose(
  s: RawSession,
  codec: Codec,
  n: bigint,
  waitMs: number,
  report: FuzzReport,
  input: { hex: string[]; note: string },
): Promise<boolean> {
  s.send(encodeDevice({ ping: { nonce: String(n) } }, codec));
  for (;;) {
    const v = await s.next(waitMs);
    if (v === undefined) throw new FuzzFailure(`no Pong and no close within ${waitMs} ms after ${input.note}`, input);
    if (!(v instanceof Uint8Array)) {
      report.closes[String(v.code)] = (report.closes[String(v.code)] ?? 0) + 1;
      return false;
    }
    let f: Frame;
    try {
      f = decodeCloud(v, codec);
    } catch (e) {
      throw new FuzzFailure(
        `the cloud sent an undecodable frame after ${input.note}: ${(e as Error).message}`,
        input,
        "undecodable",
      );
    }
    if (f.body === "error") {
      const code = String((f.error as { code?: string }).code);
      report.errors[code] = (report.errors[code] ?? 0) + 1;
    }
    if (f.body === "pong" && String((f.pong as { nonce?: string }).nonce) === String(n)) return true;
  }
}

/** Replays one saved input (a corpus entry) on a fresh connection; throws FuzzFailure when the cloud does not survive it. */
export async function replayInput(
  o: Omit<FuzzOptions, "cases" | "seed">,
  input: { hex: string[]; note: string },
): Promise<void> {
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
