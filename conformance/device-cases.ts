/**
 * Cases for a device under test: the suite plays the cloud. A device run is
 * one connection and one request; where the device's displayed answer is
 * observable (`--exec`: its stdout), cases check it against the tokens the
 * suite sent, so that display rules (takeover, invalid frames, lost
 * connections) are checked by what the user would see.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { Case, DeviceCaseEnv, DeviceOutcome } from "./case.js";
import { CheckFailure, field, isClose, NotOffered, requestIdOf, type Probe } from "./probe.js";
import { closeCodeFor } from "./error-mapping.js";
import { ggufFingerprints } from "./fingerprints.js";
import { textOf, withoutCutChar, type ModelOracle } from "./oracle.js";
import { render, SUITE_MINOR, type Frame } from "./wire.js";

export function expectThat(ok: boolean, expected: string, observed: string): void {
  if (!ok) throw new CheckFailure(expected, observed);
}

/**
 * The answer tokens the suite sends: pieces that split "ï" and "🙂" across
 * tokens (PDD-MSG-004), then numbered markers no model will produce on its
 * own, so a cloud token displayed where it must not be is visible.
 */
export const PIECES: Buffer[] = [
  Buffer.from(" The"),
  Buffer.from(" na"),
  Buffer.from([0xc3]),
  Buffer.from([0xaf, 0x76, 0x65]), // "ïve" completed
  Buffer.from([0x20, 0xf0, 0x9f]),
  Buffer.from([0x99, 0x82]), // " 🙂" completed
  ...Array.from({ length: 250 }, (_, i) => Buffer.from(` ⟪${String(i + 6).padStart(3, "0")}⟫`)),
];
export const MARK = "⟪";
/** Token IDs of the suite's "cloud": arbitrary, since its tokenizer is not the device's (PDD-MSG-009). */
export const tokenAt = (i: number) => ({ id: 40_000 + i, piece: PIECES[i % PIECES.length]! });

/** Fingerprints of a model nobody has. */
export const FOREIGN = {
  model: createHash("sha256").update("pdd-conformance model").digest(),
  tokenizer: createHash("sha256").update("pdd-conformance tokenizer").digest(),
};

export interface Served {
  hello: Frame;
  request: Frame;
  id: number;
  /** Answer tokens sent. */
  sent: number;
  /** The device's Takeover index, if it sent one before the End. */
  takeover?: number;
  cancelled?: boolean;
}

/** Frames the device sent, checked as they come (PDD-TAKEOVER-001/002, PDD-CANCEL-002). */
export function observe(s: Served, f: Frame): void {
  const id = requestIdOf(f);
  if (id === undefined || id !== s.id) return;
  expectThat(!s.cancelled, `no frame for request ${id} after its Cancel (PDD-CANCEL-002)`, render(f));
  if (f.body === "takeover") {
    const k = field<number>(f, "takeover.index");
    expectThat(
      s.takeover === undefined,
      "at most one Takeover per request (PDD-TAKEOVER-002)",
      `a second Takeover at ${k}`,
    );
    expectThat(k <= s.sent, `a Takeover index ≤ the ${s.sent} tokens received (PDD-TAKEOVER-001)`, String(k));
    s.takeover = k;
  }
  if (f.body === "cancel") s.cancelled = true;
}

/** What greet answered on each session: the negotiated minor and HelloAck.cloud_model. */
const acked = new WeakMap<Probe, { minor: number; cloudModel: Frame }>();

/** The negotiated minor greet answered on `p` (0 before its HelloAck). */
export const ackedMinor = (p: Probe): number => acked.get(p)?.minor ?? 0;

/** RefinedPrompt.scorer as the suite's cloud sends it: its served model, from 1.2 on (PDD-REF-011, PDD-REF-012). */
/**
 * A RefinedPrompt whose spans keep one token while its text keeps the whole prompt: a device that takes
 * the spans where it must take `text` (PDD-REF-007) answers from one token. Without `scorer`.
 */
export function spansDisagreeWithText(requestId: number, text: string): Frame {
  return {
    requestId,
    method: "REFINE_METHOD_SURPRISAL_DROP",
    kept: [{ start: 0, end: 1 }],
    text,
    originalTokens: 400,
    keptTokens: 1,
    ratio: 0.0025,
  };
}

export function suiteScorer(p: Probe): { scorer?: Frame } {
  const a = acked.get(p);
  return a && a.minor >= 2 ? { scorer: a.cloudModel } : {};
}

/** Waits for the device's Hello, checks it, and answers HelloAck. */
export async function greet(
  p: Probe,
  o: {
    model?: "device" | "foreign";
    tokenizer?: "device";
    kv?: boolean;
    refinement?: boolean;
    limits?: Record<string, number>;
    /** The highest minor the suite answers with (default SUITE_MINOR): the version is 1.min(offered, this) (PDD-VER-002). */
    minor?: number;
  } = {},
): Promise<Frame> {
  const hello = await p.until(() => true, "Hello as the device's first frame (PDD-CONN-001)");
  expectThat(hello.body === "hello", "Hello as the device's first frame (PDD-CONN-001)", render(hello));
  const versions = field<{ major: number; minor: number }[]>(hello, "hello.versions");
  expectThat(
    versions.length > 0 && new Set(versions.map((v) => v.major)).size === versions.length,
    "one or more versions, at most one per major (PDD-VER-001)",
    JSON.stringify(versions),
  );
  expectThat(
    versions.some((v) => v.major === 1),
    "version 1 offered",
    JSON.stringify(versions),
  );
  const codecs = field<string[]>(hello, "hello.codecs");
  const mine = p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK";
  expectThat(
    codecs.includes(mine),
    `Hello.codecs containing the connection's ${mine} (PDD-CONN-007)`,
    JSON.stringify(codecs),
  );
  expectThat(
    codecs.includes("CODEC_PROTO"),
    "CODEC_PROTO among the device's codecs: it lists every codec it implements (PDD-CONN-007, PDD-CODEC-002)",
    JSON.stringify(codecs),
  );
  const dm = field<Record<string, Uint8Array> | null>(hello, "hello.deviceModel");
  if (field(hello, "hello.capabilities.kvChunks") === true) {
    expectThat(
      dm?.modelFingerprint?.length === 32 && dm?.tokenizerFingerprint?.length === 32,
      "device_model with both fingerprints from a device that imports KV (PDD-MSG-005)",
      JSON.stringify(dm && { model: dm.modelFingerprint?.length, tokenizer: dm.tokenizerFingerprint?.length }),
    );
  }
  const own = o.model === "device" && dm?.modelFingerprint?.length === 32;
  if (o.model === "device" && !own)
    throw new NotOffered("the device does not announce its model, so it cannot take KV");
  const minor = Math.min(o.minor ?? SUITE_MINOR, ...versions.filter((v) => v.major === 1).map((v) => v.minor));
  const sameTokenizer = o.tokenizer === "device" && dm?.tokenizerFingerprint !== undefined;
  const cloudModel = {
    name: "pdd-conformance",
    modelFingerprint: own ? dm!.modelFingerprint : FOREIGN.model,
    // Not the device's unless a case asks: the device must then use the pieces (PDD-MSG-009).
    tokenizerFingerprint: sameTokenizer ? dm!.tokenizerFingerprint : FOREIGN.tokenizer,
    // The device's tokenizer is its vocabulary: the same vocab_size (PDD-MSG-013 bounds the cloud's IDs by it).
    vocabSize: sameTokenizer && Number(dm!.vocabSize) > 0 ? Number(dm!.vocabSize) : 65_536,
    contextLength: 8192,
    architecture: "llama",
  };
  acked.set(p, { minor, cloudModel });
  p.send({
    helloAck: {
      version: { major: 1, minor },
      codec: mine,
      limits: {
        maxFrameBytes: 16 << 20,
        maxPromptTokens: 8192,
        maxConcurrentRequests: 4,
        maxCloudTokenBudget: 256,
        maxKvChunkBytes: 1 << 20,
        idleTimeoutMs: 60_000,
        maxRequestDurationMs: 300_000,
        ...o.limits,
      },
      cloudModel,
      capabilities: {
        kvChunks: o.kv ?? false,
        kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"],
        refinement: o.refinement ?? false,
        tokenIds: false,
      },
      serverName: "pdd-conformance",
    },
  });
  return hello;
}

/** Waits for the device's PrefillRequest and checks it. */
export async function nextRequest(p: Probe, hello: Frame): Promise<Served> {
  const request = await p.until((f) => f.body === "prefillRequest", "a PrefillRequest");
  const id = field<number>(request, "prefillRequest.requestId");
  expectThat(id > 0, "a non-zero request_id (PDD-CONN-013)", String(id));
  expectThat(
    field(request, "prefillRequest.tokens") === null || field(request, "prefillRequest.tokens") === undefined,
    "a text prompt: the tokenizers differ (PDD-REQ-002)",
    render(request),
  );
  expectThat(
    typeof field(request, "prefillRequest.text") === "string" &&
      field<string>(request, "prefillRequest.text").length > 0,
    "a non-empty prompt (PDD-REQ-003)",
    render(request),
  );
  expectThat(
    field<number>(request, "prefillRequest.cloudTokenBudget") >= 1,
    "cloud_token_budget ≥ 1 (PDD-REQ-004)",
    String(field(request, "prefillRequest.cloudTokenBudget")),
  );
  return { hello, request, id, sent: 0 };
}

export function accept(
  p: Probe,
  s: Served,
  o: { budget?: number; kv?: { granted: boolean; totalBytes?: number }; refine?: boolean; promptTokens?: number } = {},
): number {
  const asked = field<number>(s.request, "prefillRequest.cloudTokenBudget");
  const budget = Math.min(asked, o.budget ?? asked);
  const askedKv = field(s.request, "prefillRequest.kv") !== null && field(s.request, "prefillRequest.kv") !== undefined;
  const askedRefine =
    field(s.request, "prefillRequest.refine") !== null && field(s.request, "prefillRequest.refine") !== undefined;
  p.send({
    accepted: {
      requestId: s.id,
      promptTokens: o.promptTokens ?? 16,
      cloudTokenBudget: budget,
      kv: o.kv
        ? { granted: o.kv.granted, refusal: o.kv.granted ? "ERROR_CODE_UNSPECIFIED" : "ERROR_CODE_MODEL_MISMATCH" }
        : askedKv
          ? { granted: false, refusal: "ERROR_CODE_MODEL_MISMATCH", detail: "not offered by this case" }
          : undefined,
      refine: askedRefine
        ? o.refine
          ? { granted: true }
          : { granted: false, refusal: "ERROR_CODE_UNSUPPORTED_FEATURE" }
        : undefined,
      kvFormat: o.kv?.granted ? "KV_FORMAT_LLAMA_SEQ_STATE" : undefined,
      kvTotalBytes: o.kv?.totalBytes ? String(o.kv.totalBytes) : undefined,
    },
  });
  return budget;
}

/** Sends answer tokens [s.sent, to), in batches of `batch`. */
export function sendTokens(p: Probe, s: Served, to: number, batch = 1): void {
  while (s.sent < to) {
    if (s.sent === 0) {
      p.send({ firstToken: { requestId: s.id, token: tokenAt(0), queueUs: 0, prefillUs: 1000 } });
      s.sent = 1;
      continue;
    }
    const n = Math.min(batch, to - s.sent);
    p.send({
      tokenBatch: {
        requestId: s.id,
        startIndex: s.sent,
        tokens: Array.from({ length: n }, (_, i) => tokenAt(s.sent + i)),
      },
    });
    s.sent += n;
  }
}

export function end(
  p: Probe,
  s: Served,
  reason: string,
  tokenCount = s.sent,
  usage: Record<string, unknown> = {},
): void {
  p.send({
    end: {
      requestId: s.id,
      reason,
      tokenCount,
      usage: { promptTokens: 16, decodedTokens: s.sent, sentTokens: s.sent, ...usage },
    },
  });
}

/**
 * Streams tokens one by one every `paceMs` until the device takes over (then
 * End TAKEN_OVER at k) or the budget is spent (End BUDGET_EXHAUSTED).
 * With `inFlight`, tokens keep coming for that many more steps after the
 * Takeover, as they would from a cloud that had them on the wire.
 */
export async function stream(
  p: Probe,
  s: Served,
  budget: number,
  o: { paceMs?: number; inFlight?: number; holdMs?: number } = {},
): Promise<void> {
  const pace = o.paceMs ?? 15;
  // With holdMs, the stream pauses short of the budget (room left for inFlight tokens) for up to
  // holdMs, or until the device takes over: a device on a slow machine still gets to take over.
  const holdAt = o.holdMs === undefined ? budget : budget - (o.inFlight ?? 0) - 1;
  let holdUntil: number | undefined;
  sendTokens(p, s, 1);
  while (s.sent < budget) {
    if (s.sent >= holdAt) holdUntil ??= Date.now() + o.holdMs!;
    const r = await p.recv(holdUntil === undefined ? pace : Math.max(pace, holdUntil - Date.now()));
    if (isClose(r)) return;
    if (r) observe(s, r as Frame);
    if (s.cancelled) return end(p, s, "END_REASON_CANCELLED");
    if (s.takeover !== undefined) {
      const extra = Math.min(budget, s.sent + (o.inFlight ?? 0));
      sendTokens(p, s, extra);
      return end(p, s, "END_REASON_TAKEN_OVER", s.takeover);
    }
    if (!r) sendTokens(p, s, s.sent + 1);
  }
  end(p, s, "END_REASON_BUDGET_EXHAUSTED");
}

/** Reads the device's frames until it closes or falls silent, checking each. */
export async function drain(p: Probe, s: Served, ms = 300): Promise<void> {
  for (;;) {
    const r = await p.recv(ms);
    if (r === undefined || isClose(r)) return;
    observe(s, r as Frame);
  }
}

/** The longest prefix of `b` made of whole UTF-8 characters, as text. */
function wholeChars(b: Buffer): string {
  let end = b.length;
  for (let back = 1; back <= Math.min(3, b.length); back++) {
    const c = b[b.length - back]!;
    if ((c & 0xc0) === 0x80) continue;
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (need > back) end = b.length - back;
    break;
  }
  return b.subarray(0, end).toString("utf8");
}

export const cloudText = (k: number) => Buffer.concat(PIECES.slice(0, k).map((_, i) => tokenAt(i).piece));

/**
 * The displayed answer must be the cloud's tokens [0, k) and then the
 * device's own text, which never shows a marker (PDD-TAKEOVER-003). `bound`
 * is the number of cloud tokens the device may use (End.token_count, the
 * tokens received before a loss, or before an invalid frame); k is its
 * Takeover index when it sent one, else `bound` — unless it cancelled, when
 * it may have shown any j ≤ bound of them.
 */
export async function expectAnswer(
  env: DeviceCaseEnv,
  s: Served,
  bound: number,
  rule: string,
): Promise<DeviceOutcome | undefined> {
  const out = await env.outcome();
  if (!out) return undefined;
  expectThat(
    out.exitCode === 0,
    `the device to finish its answer and exit 0 (${rule})`,
    `exit ${out.exitCode}: ${out.stderr.slice(-300)}`,
  );
  let k = s.cancelled ? undefined : Math.min(s.takeover ?? bound, bound);
  if (k === undefined) {
    k = 0;
    for (let j = bound; j > 0; j--) {
      if (out.text.startsWith(wholeChars(cloudText(j)))) {
        k = j;
        break;
      }
    }
  }
  const prefix = wholeChars(cloudText(k));
  expectThat(
    out.text.startsWith(prefix),
    `the answer to start with the cloud's tokens [0, ${k}): ${JSON.stringify(prefix)} (${rule}, PDD-MSG-004)`,
    JSON.stringify(out.text.slice(0, prefix.length + 40)),
  );
  const own = out.text.slice(prefix.length);
  expectThat(
    !own.includes(MARK),
    `no cloud token at index ≥ ${k} in the answer (${rule})`,
    JSON.stringify(own.slice(Math.max(0, own.indexOf(MARK) - 20), own.indexOf(MARK) + 20)),
  );
  return out;
}

export function needsKv(hello: Frame): void {
  if (field(hello, "hello.capabilities.kvChunks") !== true)
    throw new NotOffered("the device does not import KV chunks");
}

/**
 * A device run with one cloud token and End: its answer is then a pure
 * function of the prompt, token 0 and the device's model — the baseline that
 * a run with a bad KV image or a refinement must reproduce.
 */
export async function oneTokenRun(
  p: Probe,
  o: {
    model?: "device" | "foreign";
    kv?: boolean;
    during?: (s: Served) => Promise<void> | void;
    endUsage?: Record<string, unknown>;
    afterEnd?: (s: Served) => void;
    refinement?: boolean;
    acceptWith?: Parameters<typeof accept>[2];
  },
): Promise<Served> {
  const hello = await greet(p, { model: o.model, kv: o.kv, refinement: o.refinement });
  const s = await nextRequest(p, hello);
  accept(p, s, { budget: 1, ...o.acceptWith });
  await o.during?.(s);
  sendTokens(p, s, 1);
  end(p, s, "END_REASON_BUDGET_EXHAUSTED", 1, o.endUsage);
  o.afterEnd?.(s);
  await drain(p, s);
  return s;
}

export async function baselineAnswer(env: DeviceCaseEnv): Promise<string | undefined> {
  const run = await env.again();
  await oneTokenRun(run.probe, {});
  const out = await run.outcome();
  return out?.exitCode === 0 ? out.text : undefined;
}

/** The device's answer alone: the suite refuses the request (UNAVAILABLE), so no cloud token is used. */
export async function localAnswer(env: DeviceCaseEnv): Promise<string | undefined> {
  const run = await env.again();
  const s = await nextRequest(run.probe, await greet(run.probe));
  run.probe.send({
    error: {
      requestId: s.id,
      code: "ERROR_CODE_UNAVAILABLE",
      message: "the suite asks for a local answer",
      retryable: true,
    },
  });
  end(run.probe, s, "END_REASON_ERROR", 0);
  await drain(run.probe, s);
  const out = await run.outcome();
  return out?.exitCode === 0 ? out.text : undefined;
}

/** Cuts an image into chunks with correct CRCs and the image SHA-256 on the last. */
export function chunksOf(id: number, image: Buffer, o: { tokenCount?: number; chunk?: number } = {}): Frame[] {
  const chunk = o.chunk ?? 4096;
  const sha = createHash("sha256").update(image).digest();
  const out: Frame[] = [];
  for (let off = 0; off < image.length; off += chunk) {
    const data = image.subarray(off, off + chunk);
    const last = off + chunk >= image.length;
    out.push({
      kvChunk: {
        requestId: id,
        format: "KV_FORMAT_LLAMA_SEQ_STATE",
        tokenStart: 0,
        tokenCount: o.tokenCount ?? 17,
        offset: String(off),
        totalBytes: String(image.length),
        data,
        crc32: crc32(data) >>> 0,
        imageSha256: last ? sha : undefined,
      },
    });
  }
  return out;
}

export function sendKv(p: Probe, s: Served, frames: Frame[]): void {
  for (const f of frames) p.sendKv(s.id, f);
  p.endKv(s.id);
}

/**
 * With the suite's own model (--model): the answer is the cloud's token 0 and
 * then the greedy continuation of the prompt and that token, which the device
 * re-tokenized as a continuation or with the prompt (Appendix C leaves the
 * seam to it). A device that never prefills or decodes cannot show it.
 */
export async function expectOwnContinuation(oracle: ModelOracle, s: Served, text: string, rule: string): Promise<void> {
  const prompt = field<string>(s.request, "prefillRequest.text");
  const max = field<number>(s.request, "prefillRequest.maxTokens");
  const cloud = cloudText(1).toString("utf8");
  const own = oracle.tokenize(prompt);
  const seams = [[...own, ...oracle.tokenizeContinuation(cloud)], oracle.tokenize(prompt + cloud)];
  const answers = await Promise.all(
    seams.map(async (ctx) => cloud + textOf(oracle, await oracle.continuation(ctx, Math.max(0, max - 1)))),
  );
  expectThat(
    answers.map(withoutCutChar).includes(withoutCutChar(text)),
    `the cloud's token, then the greedy continuation of the prompt: ${JSON.stringify(answers[0]!.slice(0, 60))} (${rule})`,
    JSON.stringify(text.slice(0, 60)) + (text === cloud ? " — the cloud's token alone: the device did not decode" : ""),
  );
}

/** End with `reason` after 6 tokens completes the answer: the device shows exactly those tokens. */
function completeAnswerCase(id: string, reason: string, rule: string): Case {
  const name = reason.replace("END_REASON_", "");
  return {
    id,
    title: `treats End ${name} as the complete answer`,
    role: "device",
    requirements: [rule],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 8 });
      sendTokens(p, s, 6, 2);
      end(p, s, reason);
      await drain(p, s);
      const out = await expectAnswer(env, s, 6, rule);
      const all = cloudText(6).toString("utf8");
      if (out && s.takeover === undefined && !s.cancelled)
        expectThat(
          out.text === all,
          `exactly the 6 cloud tokens ${JSON.stringify(all)}, nothing after ${name} (${rule})`,
          JSON.stringify(out.text),
        );
    },
  };
}

export const DEVICE_CASES: Case[] = [
  {
    id: "device.fingerprints",
    title: "announces the Appendix B fingerprints of its model file",
    role: "device",
    requirements: ["PDD-FP-001", "PDD-FP-002", "PDD-MSG-005"],
    async run(p, env) {
      const hello = await p.until(() => true, "Hello");
      if (!env.modelFile)
        throw new NotOffered("give the suite the device's model file (--model FILE) to check its fingerprints");
      const want = ggufFingerprints(env.modelFile);
      const m = field<Record<string, Uint8Array> | null>(hello, "hello.deviceModel");
      if (!m) throw new NotOffered("the device does not announce its model");
      expectThat(
        Buffer.from(m.tokenizerFingerprint ?? []).equals(want.tokenizer),
        `tokenizer_fingerprint ${want.tokenizer.toString("hex")} (PDD-FP-002)`,
        Buffer.from(m.tokenizerFingerprint ?? []).toString("hex"),
      );
      expectThat(
        Buffer.from(m.modelFingerprint ?? []).equals(want.model),
        `model_fingerprint ${want.model.toString("hex")} (PDD-FP-001)`,
        Buffer.from(m.modelFingerprint ?? []).toString("hex"),
      );
      p.session.close();
    },
  },
  {
    id: "device.served",
    title:
      "says Hello first, asks a valid request, displays the cloud's tokens (split characters included) and finishes",
    role: "device",
    requirements: [
      "PDD-CONN-001",
      "PDD-VER-001",
      "PDD-CONN-007",
      "PDD-CODEC-002",
      "PDD-MSG-005",
      "PDD-CONN-013",
      "PDD-REQ-002",
      "PDD-REQ-003",
      "PDD-REQ-004",
      "PDD-MSG-001",
      "PDD-MSG-009",
      "PDD-MSG-004",
      "PDD-TAKEOVER-001",
      "PDD-TAKEOVER-002",
    ],
    answer: true,
    async run(p, env) {
      const hello = await greet(p);
      const s = await nextRequest(p, hello);
      const budget = accept(p, s, { budget: 12 });
      await stream(p, s, budget);
      await drain(p, s);
      await expectAnswer(env, s, s.sent, "PDD-MSG-009");
    },
  },
  {
    id: "device.takeover.in-flight",
    title: "displays no cloud token at or past its takeover index, whether buffered or in flight",
    role: "device",
    requirements: ["PDD-TAKEOVER-003", "PDD-TAKEOVER-009", "PDD-TAKEOVER-001", "PDD-TAKEOVER-002"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      const budget = accept(p, s);
      await stream(p, s, budget, { paceMs: 40, inFlight: 6, holdMs: 20_000 });
      await drain(p, s);
      if (s.takeover === undefined)
        throw new NotOffered(`the device never took over within its budget of ${budget} tokens`);
      await expectAnswer(env, s, s.takeover, "PDD-TAKEOVER-003");
    },
  },
  completeAnswerCase("device.end.eos", "END_REASON_EOS", "PDD-IDX-005"),
  completeAnswerCase("device.end.max-tokens", "END_REASON_MAX_TOKENS", "PDD-IDX-008"),
  {
    id: "device.enum.unknown-values",
    title: "reads an unknown EndReason as ERROR and an unknown ErrorCode as INTERNAL, and finishes the answer",
    role: "device",
    requirements: ["PDD-VER-008", "PDD-VER-005"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 8 });
      sendTokens(p, s, 3);
      p.sendUnchecked({ error: { requestId: s.id, code: 977, message: "a code from the future", retryable: false } });
      p.sendUnchecked({ end: { requestId: s.id, reason: 99, tokenCount: 3 } });
      await drain(p, s);
      await expectAnswer(env, s, 3, "PDD-VER-008");
    },
  },
  {
    id: "device.unknown-body",
    title: "ignores frames with an unknown body and fields it does not know",
    role: "device",
    requirements: ["PDD-VER-006", "PDD-VER-005"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 6 });
      sendTokens(p, s, 2);
      if (p.codec === "proto") {
        // Field 15 of the envelope: a body from a later version (length 2, holding varint field 1 = 1).
        p.sendBytes(Uint8Array.of(0x7a, 0x02, 0x08, 0x01), "an envelope with unknown body field 15");
      } else {
        p.sendRaw({ bodyFromTheFuture: { x: 1 } }, "an envelope with an unknown key");
      }
      sendTokens(p, s, 6);
      end(p, s, "END_REASON_BUDGET_EXHAUSTED");
      await drain(p, s);
      await expectAnswer(env, s, 6, "PDD-VER-006");
    },
  },
  {
    id: "device.index.gap",
    title: "does not use a TokenBatch that skips an index, and keeps the tokens before it",
    role: "device",
    requirements: ["PDD-SM-001", "PDD-CANCEL-002"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 32 });
      sendTokens(p, s, 8);
      p.send({ tokenBatch: { requestId: s.id, startIndex: 9, tokens: [tokenAt(9), tokenAt(10), tokenAt(11)] } });
      await drain(p, s);
      end(p, s, "END_REASON_BUDGET_EXHAUSTED", 12);
      await drain(p, s);
      await expectAnswer(env, s, 8, "PDD-SM-001");
    },
  },
  {
    id: "device.request-id.foreign",
    title: "ignores tokens for a request ID it never used",
    role: "device",
    requirements: ["PDD-SM-002"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 8 });
      sendTokens(p, s, 2);
      p.send({ tokenBatch: { requestId: s.id + 1000, startIndex: 2, tokens: [tokenAt(30), tokenAt(31)] } });
      sendTokens(p, s, 4);
      end(p, s, "END_REASON_BUDGET_EXHAUSTED");
      await drain(p, s);
      await expectAnswer(env, s, 4, "PDD-SM-002");
    },
  },
  {
    id: "device.connection.lost",
    title: "keeps the tokens received when the connection drops, and finishes locally",
    role: "device",
    requirements: ["PDD-CONN-018"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 64 });
      sendTokens(p, s, 4);
      await drain(p, s, 100);
      p.session.close(); // abrupt
      await expectAnswer(env, s, 4, "PDD-CONN-018");
    },
  },
  {
    id: "device.connection.error",
    title: "treats a connection error as the end of every request, and finishes locally",
    role: "device",
    requirements: ["PDD-CONN-018"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 64 });
      sendTokens(p, s, 3);
      p.send({ error: { requestId: 0, code: "ERROR_CODE_INTERNAL", message: "the suite's cloud fails" } });
      // Tokens after a connection error are not used (the connection is over).
      p.send({ tokenBatch: { requestId: s.id, startIndex: 3, tokens: [tokenAt(40)] } });
      await drain(p, s, 100);
      // The binding's own form of INTERNAL (§13.3, PDD-GRPC-003): 4020, gRPC status 13, session code 20.
      p.session.close(closeCodeFor(p.transport ?? "websocket", 20), "the suite's cloud fails");
      await expectAnswer(env, s, 3, "PDD-CONN-018");
    },
  },
  {
    id: "device.refine.text",
    title: "uses RefinedPrompt.text, not the spans, when the tokenizers differ",
    role: "device",
    requirements: ["PDD-REF-007"],
    answer: true,
    async run(p, env) {
      const s = await oneTokenRun(p, {
        refinement: true,
        acceptWith: { refine: true },
        during: (s) => {
          if (field(s.request, "prefillRequest.refine") === null)
            throw new NotOffered("the device does not ask for refinement");
          // The spans keep one token; the text keeps the whole prompt. Only `text` is right here.
          const text = field<string>(s.request, "prefillRequest.text");
          p.send({ refinedPrompt: { ...spansDisagreeWithText(s.id, text), ...suiteScorer(p) } });
        },
      });
      const out = await expectAnswer(env, s, 1, "PDD-REF-007");
      if (out && env.oracle) await expectOwnContinuation(env.oracle, s, out.text, "PDD-REF-007");
      // The baseline after this run has ended: the suite runs one device at a time.
      const expected = out ? await baselineAnswer(env) : undefined;
      if (out && expected !== undefined)
        expectThat(
          out.text === expected,
          `the answer of the full prompt (the refined text is the prompt): ${JSON.stringify(expected.slice(0, 60))} (PDD-REF-007)`,
          JSON.stringify(out.text.slice(0, 60)),
        );
    },
  },
];
