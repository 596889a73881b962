/**
 * Structured fuzzing of a live device: the suite plays the cloud. Its HelloAck
 * names the model the device announced in its Hello, so the device takes the
 * fuzzer's token IDs as its own and asks for KV (issue 13: the IDs and the
 * image must reach the device's engine, not be dropped as a foreign model's).
 * Each run opens coherently (Accepted, FirstToken, a KV image), then sends
 * mutated frames (object and byte level, and token IDs outside any vocabulary),
 * then End. With the device's own model (`oracle`) the tokens are the greedy
 * answer and the image is a real one of the prompt with one header mutation
 * (kv-mutations.ts) in most runs; the last run is clean, and its answer must be
 * the greedy one. Every run must end (exit 0, an answer) within the wait.
 */
import { prng } from "../shared/index.js";
import { createSelfSignedCertificate } from "../transports/index.js"; // a test certificate only
import { chunksOf } from "./device-cases.js";
import { mutateObject } from "./fuzz.js";
import { FuzzFailure } from "./fuzz-liveness.js";
import { MUTATIONS } from "./kv-mutations.js";
import { mutator } from "./mutator.js";
import { textOf, withoutCutChar, type ModelOracle } from "./oracle.js";
import { listen, type AcceptedSession } from "./raw-server.js";
import type { DeviceLauncher } from "./runner.js";
import { decodeDevice, encodeCloud, type Codec, type Frame } from "./wire.js";

export interface DeviceFuzzReport {
  cases: number;
  runs: number;
  /** Runs whose HelloAck named the device's own model (its Hello carried device_model). */
  sameModel: number;
  /** Runs whose PrefillRequest asked for KV, and those that got a (real, mostly mutated) image. */
  kvAsked: number;
  realImages: number;
  /** Token IDs sent outside any vocabulary; probes (every third run) whose ID the device refused as PDD-MSG-013 says. */
  badIds: number;
  idRefusals: number;
  ms: number;
}

/** IDs no tokenizer of ours has: past the vocabulary, int32's edge, -1 read as uint32. */
const BAD_IDS = [1_000_000, 65_536 * 8, 2 ** 31 - 1, 2 ** 32 - 1];

/** The image mutations that need no context size (the oversize one is the hostile suite's). */
const HEADER_MUTATIONS = MUTATIONS.filter((m) => !/context/.test(m.name));

interface Request {
  id: number;
  text: string;
  /** The prompt as token IDs, when the device sent them in place of its text. */
  ids?: number[];
  kvAsk: boolean;
  refineAsk: boolean;
  sameModel: boolean;
}

export async function fuzzDevice(o: {
  listen: string;
  launcher: DeviceLauncher;
  cases: number;
  seed: number;
  codec?: Codec;
  framesPerRun?: number;
  waitMs?: number;
  /** The device's model in the suite (pdd conformance --model): real tokens and images, and the greedy answer. */
  oracle?: ModelOracle;
  onProgress?: (done: number) => void;
}): Promise<DeviceFuzzReport> {
  const r = prng(o.seed);
  const mutateBytes = mutator(r);
  const waitMs = o.waitMs ?? 10_000;
  const perRun = o.framesPerRun ?? 50;
  const tls = o.listen.startsWith("https:") ? await createSelfSignedCertificate() : undefined;
  const server = await listen({ url: o.listen, tls });
  const t0 = performance.now();
  const rep: DeviceFuzzReport = {
    cases: 0,
    runs: 0,
    sameModel: 0,
    kvAsked: 0,
    realImages: 0,
    badIds: 0,
    idRefusals: 0,
    ms: 0,
  };
  try {
    for (let clean = false; !clean; ) {
      clean = rep.cases >= o.cases;
      if (clean && !o.oracle) break;
      const run = o.launcher.start({ url: server.url, codec: o.codec ?? "proto", caPem: tls?.cert });
      rep.runs++;
      const note = `device run ${rep.runs}, seed ${o.seed}`;
      const s = await server.accept(waitMs);
      if (!s) throw new FuzzFailure(`run ${rep.runs}: the device did not connect`, { hex: [], note });
      const sent: string[] = [];
      let want: string | undefined;
      try {
        const req = await answerHelloAndRequest(s, waitMs);
        rep.sameModel += req.sameModel ? 1 : 0;
        rep.kvAsked += req.kvAsk ? 1 : 0;
        const plan = await planRun(req, o.oracle, r, clean ? "clean" : rep.runs % 3 === 2 ? "id-probe" : "fuzz");
        rep.realImages += plan.realImage ? 1 : 0;
        want = plan.want;
        for (const f of plan.opening) s.send(encodeCloud(f, s.codec, true));
        if (plan.idProbe) {
          rep.badIds++;
          if (await idRefused(s, waitMs, { hex: sent, note })) rep.idRefusals++;
        }
        for (let k = 0; k < perRun && !clean && rep.cases < o.cases; k++, rep.cases++) {
          const bytes = mutatedFrame(plan.valid, s.codec, r, mutateBytes, rep);
          sent.push(Buffer.from(bytes).toString("hex"));
          s.send(bytes);
        }
        s.send(encodeCloud(plan.end, s.codec, true));
      } catch (e) {
        if (e instanceof FuzzFailure) throw e;
        // the device closed the connection on a bad frame: its right
      }
      await expectAnswer(run, s, waitMs, want, { hex: sent, note });
      o.onProgress?.(rep.cases);
    }
  } finally {
    await server.close();
  }
  rep.ms = Math.round(performance.now() - t0);
  return rep;
}

/** The device's liveness: it ends within the wait, exit 0 and an answer (the greedy one when `want` is known). */
async function expectAnswer(
  run: ReturnType<DeviceLauncher["start"]>,
  s: AcceptedSession,
  waitMs: number,
  want: string | undefined,
  input: { hex: string[]; note: string },
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const out = await Promise.race([
    run.outcome,
    new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), waitMs))),
  ]);
  clearTimeout(timer);
  run.stop();
  // The clean run's frames are valid: a device that refused them did not use them (its reason says why).
  const cancel = out && want !== undefined ? await cancelOf(s, waitMs) : undefined;
  s.close();
  if (cancel)
    throw new FuzzFailure(`${input.note}: the device cancelled a valid answer: ${cancel}`, input, "clean-cancelled");
  if (!out) throw new FuzzFailure(`${input.note}: the device did not finish within ${waitMs} ms`, input, "no-answer");
  if (out.exitCode !== 0)
    throw new FuzzFailure(
      `${input.note}: the device failed (exit ${out.exitCode}): ${out.stderr.slice(-300)}`,
      input,
      "no-answer",
    );
  if (want !== undefined && withoutCutChar(out.text) !== withoutCutChar(want))
    throw new FuzzFailure(
      `${input.note}: after the attacks the device answered ${JSON.stringify(out.text)}, not the greedy ${JSON.stringify(want)}`,
      input,
      "wrong-answer",
    );
}

/**
 * PDD-MSG-013: a device that uses the cloud's IDs refuses one outside its vocabulary before its engine sees
 * it, with Cancel PROTOCOL_VIOLATION; true when it did. One that evaluates it fails in llama.cpp instead and
 * can only cancel with CANCELLED, as a device already ahead of the cloud does too: that answer is counted
 * as no refusal (DeviceFuzzReport.idRefusals), and any other is a failure.
 */
async function idRefused(s: AcceptedSession, waitMs: number, input: { hex: string[]; note: string }) {
  for (;;) {
    const v = await s.next(waitMs);
    const f = v instanceof Uint8Array ? decodeDevice(v, s.codec) : undefined;
    const code = String((f?.cancel as { code?: unknown } | undefined)?.code);
    if (f?.body === "cancel" && code.endsWith("_PROTOCOL_VIOLATION")) return true;
    if (f?.body === "cancel" && code.endsWith("_CANCELLED")) return false;
    if (f === undefined || f.body === "cancel")
      throw new FuzzFailure(
        `${input.note}: a token ID outside every vocabulary got ${f ? `Cancel ${JSON.stringify(f.cancel)}` : "no Cancel"}, not Cancel PROTOCOL_VIOLATION (PDD-MSG-013)`,
        input,
        "bad-id-used",
      );
  }
}

/**
 * The first Cancel the device sent on `s` until it closed that refuses what it got: any code but CANCELLED
 * (a device ahead of the cloud, or done, cancels with CANCELLED).
 */
async function cancelOf(s: AcceptedSession, waitMs: number): Promise<string | undefined> {
  for (;;) {
    const v = await s.next(waitMs);
    if (!(v instanceof Uint8Array)) return undefined;
    const f = decodeDevice(v, s.codec);
    const code = String((f.cancel as { code?: unknown } | undefined)?.code);
    if (f.body === "cancel" && !code.endsWith("_CANCELLED")) return JSON.stringify(f.cancel);
  }
}

/** One frame of the run: a valid one mutated at the object or byte level, or a token with an ID no model has. */
function mutatedFrame(
  valid: Frame[],
  codec: Codec,
  r: () => number,
  mutateBytes: ReturnType<typeof mutator>,
  rep: DeviceFuzzReport,
): Uint8Array {
  const f = structuredClone(valid[Math.floor(r() * valid.length)]!);
  const m = r();
  let frame = m < 0.6 ? (mutateObject(f, r) as Frame) : f;
  if (m < 0.2 && ("firstToken" in f || "tokenBatch" in f)) {
    const id = BAD_IDS[Math.floor(r() * BAD_IDS.length)]!;
    frame = withId(f, id);
    rep.badIds++;
  }
  let bytes: Uint8Array;
  try {
    bytes = encodeCloud(frame, codec, true);
  } catch {
    bytes = Uint8Array.of();
  }
  return m >= 0.6 ? mutateBytes(bytes, [bytes]) : bytes;
}

const withId = (f: Frame, id: number): Frame =>
  "firstToken" in f
    ? { firstToken: { ...(f.firstToken as object), token: { id, piece: Buffer.from(" x") } } }
    : { tokenBatch: { ...(f.tokenBatch as object), tokens: [{ id, piece: Buffer.from(" x") }] } };

interface RunPlan {
  opening: Frame[];
  valid: Frame[];
  end: Frame;
  realImage: boolean;
  /** The opening ends with a token ID outside every vocabulary, and nothing else is wrong before it. */
  idProbe: boolean;
  want?: string;
}

/**
 * The oracle's answers and images, by prompt: the device prefills while the fuzzer plans, and a fuzzer that
 * plans slowly finds a device already ahead of it, past using its tokens (each launch asks the same prompt).
 */
const memos = new WeakMap<ModelOracle, Map<string, Promise<unknown>>>();
function remembered<T>(oracle: ModelOracle, key: string, make: () => Promise<T>): Promise<T> {
  const memo = memos.get(oracle) ?? new Map<string, Promise<unknown>>();
  memos.set(oracle, memo);
  if (!memo.has(key)) memo.set(key, make());
  return memo.get(key) as Promise<T>;
}

/**
 * What a run sends: a coherent opening, the frames it mutates, End. `clean`: no mutation, the greedy answer
 * wanted; `id-probe`: every third run from the second (the first plans the prompt's answer), the opening ends with an ID outside every vocabulary.
 */
async function planRun(
  req: Request,
  oracle: ModelOracle | undefined,
  r: () => number,
  kind: "clean" | "id-probe" | "fuzz",
) {
  const clean = kind === "clean";
  const { id } = req;
  const prompt = req.ids ?? oracle?.tokenize(req.text) ?? [];
  const ids = oracle
    ? await remembered(oracle, `answer ${prompt}`, () => oracle.continuation(prompt, 8))
    : [1, 2, 3, 4, 5, 6, 7];
  const piece = (i: number) => (oracle ? oracle.piece(ids[i]!) : Buffer.from(` t${i}`));
  const real =
    oracle && req.kvAsk ? await remembered(oracle, `image ${prompt}`, () => oracle.kvImage(prompt)) : undefined;
  // Two runs in three get a header mutation; the others the true image, which the device must import.
  const mutation = clean || r() < 1 / 3 ? undefined : HEADER_MUTATIONS[Math.floor(r() * HEADER_MUTATIONS.length)];
  const image = Buffer.from(real ? (mutation?.build(real, 0) ?? real) : Buffer.alloc(16, 3));
  const budget = Math.max(1, ids.length);
  const tokens = ids.map((_, i) => ({ id: ids[i]!, piece: piece(i) }));
  const accepted: Frame = {
    accepted: {
      requestId: id,
      promptTokens: prompt.length || 5,
      cloudTokenBudget: budget,
      ...(req.kvAsk
        ? { kv: { granted: true }, kvFormat: "KV_FORMAT_LLAMA_SEQ_STATE", kvTotalBytes: String(image.length) }
        : {}),
      ...(req.refineAsk ? { refine: { granted: false, refusal: "ERROR_CODE_UNSUPPORTED_FEATURE" } } : {}),
    },
  };
  const first: Frame = { firstToken: { requestId: id, token: tokens[0] } };
  const batches: Frame[] = tokens
    .slice(1)
    .map((t, i) => ({ tokenBatch: { requestId: id, startIndex: i + 1, tokens: [t] } }));
  const kv = req.kvAsk ? chunksOf(id, image, { tokenCount: prompt.length || 17 }) : [];
  const idProbe = kind === "id-probe";
  const badBatch: Frame = {
    tokenBatch: { requestId: id, startIndex: 1, tokens: [{ id: BAD_IDS[0], piece: Buffer.from(" x") }] },
  };
  const plan: RunPlan = {
    opening: idProbe ? [accepted, first, badBatch] : [accepted, first, ...kv],
    idProbe,
    valid: [accepted, first, ...batches, ...kv, ...extraFrames(id)],
    end: { end: { requestId: id, reason: "END_REASON_BUDGET_EXHAUSTED", tokenCount: clean ? budget : 8 } },
    realImage: real !== undefined,
  };
  if (clean && oracle) {
    plan.opening.push(...batches);
    plan.want = textOf(oracle, [...ids, ...(await oracle.continuation([...prompt, ...ids], 12 - ids.length))]);
  }
  return plan;
}

/** Answers the device's Hello with a HelloAck naming the device's own model; returns its first PrefillRequest. */
async function answerHelloAndRequest(s: AcceptedSession, waitMs: number): Promise<Request> {
  const helloBytes = await s.next(waitMs);
  if (!(helloBytes instanceof Uint8Array)) throw new Error("no Hello");
  const dm = (decodeDevice(helloBytes, s.codec).hello as { deviceModel?: Record<string, Uint8Array> } | undefined)
    ?.deviceModel;
  const own = dm?.modelFingerprint?.length === 32 && dm.tokenizerFingerprint?.length === 32;
  const cloudModel = own
    ? { modelFingerprint: dm.modelFingerprint, tokenizerFingerprint: dm.tokenizerFingerprint }
    : { modelFingerprint: Buffer.alloc(32, 1), tokenizerFingerprint: Buffer.alloc(32, 2) };
  const helloAck: Frame = {
    helloAck: {
      version: { major: 1, minor: 0 },
      codec: s.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK",
      cloudModel,
      capabilities: { kvChunks: true, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"], refinement: true },
    },
  };
  s.send(encodeCloud(helloAck, s.codec, true));
  for (;;) {
    const v = await s.next(waitMs);
    if (!(v instanceof Uint8Array)) throw new Error("no PrefillRequest");
    const f = decodeDevice(v, s.codec);
    if (f.body !== "prefillRequest") continue;
    const p = f.prefillRequest as {
      requestId: number;
      text?: string;
      tokens?: { ids?: number[] };
      kv?: unknown;
      refine?: unknown;
    };
    return {
      id: p.requestId,
      text: p.text ?? "",
      ids: p.tokens?.ids,
      kvAsk: Boolean(p.kv),
      refineAsk: Boolean(p.refine),
      sameModel: own,
    };
  }
}

/** The other frames a cloud sends for request `id`, mutated too. */
function extraFrames(id: number): Frame[] {
  return [
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
