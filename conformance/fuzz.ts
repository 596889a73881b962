/**
 * Structured fuzzing of a live cloud: valid frame sequences, mutated at the
 * object level (field values, request IDs, enums, order, duplication) and at
 * the byte level (flips, truncation, garbage), sent over a real binding. After
 * every case the cloud must still answer a Ping on that connection or close it
 * with a typed error — never hang — and a fresh connection must still be
 * served at the end.
 */
import { prng } from "../shared/index.js";
import { mutator } from "./mutator.js";
import { openGrpc, openWebSocket, openWebTransport, type RawSession } from "./raw-client.js";
import { createSelfSignedCertificate } from "../transports/index.js"; // a test certificate only
import { listen, type AcceptedSession } from "./raw-server.js";
import type { DeviceLauncher } from "./runner.js";
import { decodeCloud, decodeDevice, encodeCloud, encodeDevice, type Codec, type Frame } from "./wire.js";

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
function mutateObject(v: unknown, r: () => number): unknown {
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
    const input = {
      hex: bytes.map((b) => Buffer.from(b).toString("hex")),
      note: `case ${c}, seed ${o.seed}, ${o.codec}`,
    };
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
      if (!(v instanceof Uint8Array))
        throw new FuzzFailure("the cloud no longer serves a fresh connection after the run", {
          hex: [],
          note: "final liveness check",
        });
      if (decodeCloud(v, o.codec).body === "pong") break;
    }
  } finally {
    check.close();
  }
  report.ms = Math.round(performance.now() - t0);
  return report;
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

/**
 * Structured fuzzing of a live device: the suite plays the cloud, answers the
 * device's Hello and request with a valid stream in which frames are mutated
 * (object and byte level), then ends the request. Each mutated frame is a
 * case. Every device run must still end — exit 0, with an answer — within
 * the wait: no crash, no hang.
 */
export async function fuzzDevice(o: {
  listen: string;
  launcher: DeviceLauncher;
  cases: number;
  seed: number;
  codec?: Codec;
  framesPerRun?: number;
  waitMs?: number;
  onProgress?: (done: number) => void;
}): Promise<{ cases: number; runs: number; ms: number }> {
  const r = prng(o.seed);
  const mutateBytes = mutator(r);
  const waitMs = o.waitMs ?? 10_000;
  const perRun = o.framesPerRun ?? 50;
  const tls = o.listen.startsWith("https:") ? await createSelfSignedCertificate() : undefined;
  const server = await listen({ url: o.listen, tls });
  const t0 = performance.now();
  let cases = 0;
  let runs = 0;
  try {
    while (cases < o.cases) {
      const run = o.launcher.start({ url: server.url, codec: o.codec ?? "proto", caPem: tls?.cert });
      runs++;
      const s = await server.accept(waitMs);
      if (!s) throw new FuzzFailure(`run ${runs}: the device did not connect`, { hex: [], note: `seed ${o.seed}` });
      const send = (f: Frame) => s.send(encodeCloud(f, s.codec, true));
      const sent: string[] = [];
      try {
        const id = await answerHelloAndRequest(s, waitMs);
        const valid = validCloudFrames(id);
        for (let k = 0; k < perRun && cases < o.cases; k++, cases++) {
          const f = structuredClone(valid[Math.floor(r() * valid.length)]!);
          const m = r();
          let bytes: Uint8Array;
          try {
            bytes = encodeCloud(m < 0.6 ? (mutateObject(f, r) as Frame) : f, s.codec, true);
          } catch {
            bytes = Uint8Array.of();
          }
          if (m >= 0.6) bytes = mutateBytes(bytes, [bytes]);
          sent.push(Buffer.from(bytes).toString("hex"));
          s.send(bytes);
        }
        send({ end: { requestId: id, reason: "END_REASON_BUDGET_EXHAUSTED", tokenCount: 8 } });
      } catch {
        // the device closed the connection on a bad frame: its right
      }
      const out = await Promise.race([
        run.outcome,
        new Promise<undefined>((res) => setTimeout(() => res(undefined), waitMs)),
      ]);
      run.stop();
      s.close();
      if (!out)
        throw new FuzzFailure(`run ${runs}: the device did not finish within ${waitMs} ms`, {
          hex: sent,
          note: `device run ${runs}, seed ${o.seed}`,
        });
      if (out.exitCode !== 0)
        throw new FuzzFailure(`run ${runs}: the device failed (exit ${out.exitCode}): ${out.stderr.slice(-300)}`, {
          hex: sent,
          note: `device run ${runs}, seed ${o.seed}`,
        });
      o.onProgress?.(cases);
    }
  } finally {
    await server.close();
  }
  return { cases, runs, ms: Math.round(performance.now() - t0) };
}

/** Answers the device's Hello with a HelloAck offering everything; returns the id of its PrefillRequest. */
async function answerHelloAndRequest(s: AcceptedSession, waitMs: number): Promise<number> {
  const helloBytes = await s.next(waitMs);
  if (!(helloBytes instanceof Uint8Array)) throw new Error("no Hello");
  s.send(
    encodeCloud(
      {
        helloAck: {
          version: { major: 1, minor: 0 },
          codec: s.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK",
          cloudModel: { modelFingerprint: Buffer.alloc(32, 1), tokenizerFingerprint: Buffer.alloc(32, 2) },
          capabilities: { kvChunks: true, refinement: true },
        },
      },
      s.codec,
      true,
    ),
  );
  for (;;) {
    const v = await s.next(waitMs);
    if (!(v instanceof Uint8Array)) throw new Error("no PrefillRequest");
    const f = decodeDevice(v, s.codec);
    if (f.body === "prefillRequest") return (f.prefillRequest as { requestId: number }).requestId;
  }
}

/** One valid frame of each kind a cloud sends for request `id`: the seeds the device fuzzer mutates. */
function validCloudFrames(id: number): Frame[] {
  const piece = (i: number) => Buffer.from(` t${i}`);
  return [
    {
      accepted: {
        requestId: id,
        promptTokens: 5,
        cloudTokenBudget: 8,
        kvFormat: "KV_FORMAT_LLAMA_SEQ_STATE",
        kvTotalBytes: "16",
      },
    },
    { firstToken: { requestId: id, token: { id: 1, piece: piece(0) } } },
    ...Array.from({ length: 6 }, (_, i) => ({
      tokenBatch: { requestId: id, startIndex: i + 1, tokens: [{ id: i + 2, piece: piece(i + 1) }] },
    })),
    {
      kvChunk: {
        requestId: id,
        format: "KV_FORMAT_LLAMA_SEQ_STATE",
        offset: "0",
        totalBytes: "16",
        data: Buffer.alloc(16, 3),
        crc32: 0,
      },
    },
    {
      refinedPrompt: {
        requestId: id,
        kept: [{ start: 0, end: 2 }],
        text: "The fox",
        originalTokens: 5,
        keptTokens: 2,
        ratio: 0.4,
      },
    },
    { pong: { nonce: "1" } },
    { error: { requestId: id, code: "ERROR_CODE_INTERNAL", message: "x" } },
    { goodbye: {} },
  ];
}
