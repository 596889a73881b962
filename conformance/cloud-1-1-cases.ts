/**
 * Cloud cases for the rules spec 1.1 added (issue 14): each fails on the 1.0
 * reference cloud's behaviour, shown by a mutant in test/mutants-1-1.ts. The
 * request, KV and refinement rules here; the connection rules in
 * cloud-1-1-hello-cases.ts. CLOUD_1_1_CASES lists both in the order they run.
 */
import type { Case } from "./case.js";
import {
  AUTH_PRECEDENCE,
  CODEC_MSGPACK_STRICT,
  CONNECTION_DEVICE_ERROR,
  HELLO_FIRST_FRAME_BODILESS,
  HELLO_MAX_FRAME_MINIMUM,
  HELLO_VERSIONS,
  IDLE,
  REQUEST_ID_ZERO,
} from "./cloud-1-1-hello-cases.js";
import {
  checkServed,
  collectToEnd,
  contextLimits,
  expectEnd,
  expectRequestFails,
  expectThat,
  fillContext,
  kvGranted,
  kvPrefill,
  kvSession,
  prefill,
  refinementOffered,
  reopenAsCloudModel,
  startStreaming,
  tokenIdsOffered,
} from "./cloud-helpers.js";
import { field, NotOffered, type Probe, requestIdOf } from "./probe.js";
import { render, type Frame } from "./wire.js";

/** Serves one request and returns its End's reason and token_count (after the §6 checks). */
async function endOf(p: Probe, id: number, extra: Record<string, unknown>): Promise<{ reason: string; count: number }> {
  p.send(prefill(id, extra));
  const frames = await p.collect(id);
  checkServed(frames, id, Number(extra.cloudTokenBudget));
  const end = frames[frames.length - 1]!;
  const reason = field<string>(end, "end.reason");
  if (reason === "END_REASON_EOS") throw new NotOffered("the model ended its answer before max_tokens");
  return { reason, count: field<number>(end, "end.tokenCount") };
}

/** A PrefillRequest whose prompt is token IDs. */
const tokenPrompt = (id: number, ids: number[], cloudTokenBudget: number): Frame => ({
  prefillRequest: { requestId: id, tokens: { ids }, cloudTokenBudget },
});

const STOP_FIRST_WINS: Case = {
  id: "cloud.stop.first-wins",
  title: "lets the first Takeover decide, ignoring a second one and a Cancel, and ignores KvCredit without KV",
  role: "cloud",
  requirements: ["PDD-SM-007"],
  async run(p) {
    await p.hello();
    // Credit for a request that asked no KV, before and after Accepted: ignored, no error.
    p.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 20_000 }));
    p.send({ kvCredit: { requestId: 1, bytes: "4096" } });
    await p.until((f) => requestIdOf(f) === 1 && f.body === "firstToken", "FirstToken");
    p.send({ kvCredit: { requestId: 1, bytes: "4096" } });
    p.send({ takeover: { requestId: 1, index: 1 } });
    p.send({ takeover: { requestId: 1, index: 0 } });
    p.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED" } });
    const { frames: rest, end } = await collectToEnd(p, 1);
    const err = rest.find((f) => f.body === "error");
    expectThat(
      err === undefined,
      "no Error for a stray KvCredit, a second Takeover or a Cancel (PDD-SM-007)",
      err ? render(err) : "",
    );
    expectEnd(end, "END_REASON_TAKEN_OVER", "End{TAKEN_OVER, 1}: the first Takeover decides (PDD-SM-007)", 1);
  },
};

const KV_ZERO_CREDIT: Case = {
  id: "cloud.kv.zero-credit",
  title: "sends no KvChunk before the first KvCredit when initial_credit_bytes is 0",
  role: "cloud",
  requirements: ["PDD-KV-015"],
  needs: ["kv"],
  async run(p, env) {
    const q = await kvSession(p, env);
    q.send(kvPrefill(q, 1, { repeats: 20, budget: 12, targetTpotUs: 50_000, credit: 0 }));
    await kvGranted(q, 1);
    let tokens = 0;
    let end: Frame | undefined;
    // Until 6 tokens have come (past the point where a cloud exports its image), grant nothing.
    while (!end && tokens < 6) {
      const f = await q.until((x) => requestIdOf(x) === 1, "the request's frames");
      expectThat(f.body !== "kvChunk", "no KvChunk before any KvCredit (PDD-KV-015)", render(f));
      if (f.body === "firstToken") tokens = 1;
      if (f.body === "tokenBatch") tokens += field<unknown[]>(f, "tokenBatch.tokens").length;
      if (f.body === "end") end = f;
    }
    q.send({ kvCredit: { requestId: 1, bytes: String(256 << 20) } });
    while (!end) {
      const f = await q.until((x) => requestIdOf(x) === 1, "the request's End", 15_000);
      if (f.body === "end") end = f;
    }
  },
};

const REFINE_ROUNDING: Case = {
  id: "cloud.refine.rounding",
  title: "keeps ⌈0.6·n⌉ tokens at target_ratio 0.6 when 0.6·n is whole, on every codec",
  role: "cloud",
  requirements: ["PDD-REF-004"],
  needs: ["refinement"],
  async run(p) {
    await p.hello();
    refinementOffered(p);
    // Grow the prompt until its token count n is a multiple of 5: there ⌈0.6·n⌉ = 0.6·n, and a cloud that
    // rounds the float32 0.6000000238 in doubles keeps one token more (PDD-REF-004).
    let text = "The quick brown fox jumps over the lazy dog and the owls smile at every visitor";
    for (let id = 1; id <= 6; id++, text += " fox") {
      p.send(
        prefill(id, {
          text,
          cloudTokenBudget: 1,
          refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.6 },
        }),
      );
      const frames = await p.collect(id);
      const r = frames.find((f) => f.body === "refinedPrompt");
      if (!r) throw new NotOffered("no RefinedPrompt at ratio 0.6");
      const n = field<number>(r, "refinedPrompt.originalTokens");
      if (n % 5 !== 0) continue;
      const kept = field<number>(r, "refinedPrompt.keptTokens");
      expectThat(
        kept === (3 * n) / 5,
        `${(3 * n) / 5} of ${n} tokens kept at target_ratio 0.6: q = 600,000 millionths (PDD-REF-004)`,
        `${kept} kept`,
      );
      return;
    }
    throw new NotOffered("no prompt of a multiple of 5 tokens within 6 tries");
  },
};

const KV_ABORT: Case = {
  id: "cloud.kv.abort",
  title: "on KvAbort sends no further chunk, whatever the credit, and runs the tokens to End",
  role: "cloud",
  requirements: ["PDD-KV-019"],
  needs: ["kv"],
  async run(p, env) {
    const q = await kvSession(p, env);
    const CHUNK = 4096;
    q.send(kvPrefill(q, 1, { repeats: 20, budget: 24, targetTpotUs: 20_000, maxChunkBytes: CHUNK, credit: CHUNK }));
    await kvGranted(q, 1);
    const first = await q.until((f) => requestIdOf(f) === 1 && (f.body === "kvChunk" || f.body === "end"), "KvChunk");
    if (first.body === "end") throw new NotOffered("the cloud sent no KV image for this request");
    q.send({ kvAbort: { requestId: 1, code: "ERROR_CODE_KV_INTEGRITY", reason: "conformance: abort" } });
    q.send({ kvCredit: { requestId: 1, bytes: String(1 << 20) } });
    let kvBytes = field<Uint8Array>(first, "kvChunk.data").length;
    let end: Frame | undefined;
    while (!end) {
      const f = await q.until((x) => requestIdOf(x) === 1, "the request's End (PDD-KV-019)", 15_000);
      if (f.body === "end") end = f;
      if (f.body === "kvChunk") kvBytes += field<Uint8Array>(f, "kvChunk.data").length;
    }
    expectThat(
      field(end, "end.reason") === "END_REASON_BUDGET_EXHAUSTED" || field(end, "end.reason") === "END_REASON_EOS",
      "the tokens run to their End, not stopped by KvAbort (PDD-KV-019)",
      render(end),
    );
    // Chunks already on the wire when the KvAbort arrived may still come (they crossed it); no credit is
    // granted past the first chunk until after the KvAbort, so every later chunk was sent after processing it.
    expectThat(
      kvBytes === CHUNK && Number(field(end, "end.usage.kvBytesSent")) === CHUNK,
      `no chunk after the KvAbort: kv_bytes_sent = the one ${CHUNK}-byte chunk (PDD-KV-019)`,
      `${kvBytes} bytes received, kv_bytes_sent ${field(end, "end.usage.kvBytesSent")}`,
    );
  },
};

const REQUEST_CONTEXT_GRANT: Case = {
  id: "cloud.request.context-grant",
  title: "grants no more than context_length − prompt_tokens, and keeps max_prompt_tokens below context_length",
  role: "cloud",
  requirements: ["PDD-REQ-010", "PDD-MSG-016"],
  async run(p, env) {
    await p.hello();
    tokenIdsOffered(p);
    const { context, maxPrompt } = contextLimits(p);
    expectThat(
      maxPrompt < context,
      `max_prompt_tokens below context_length ${context} (PDD-REQ-010)`,
      String(maxPrompt),
    );
    if (maxPrompt > 8192) throw new NotOffered(`max_prompt_tokens is ${maxPrompt}; the case prefills at most 8,192`);
    const q = await reopenAsCloudModel(p, env);
    const { tokens, granted } = await fillContext(q, maxPrompt);
    expectThat(
      granted <= context - maxPrompt && maxPrompt + tokens <= context,
      `a grant of at most ${context} − ${maxPrompt} (PDD-REQ-010, PDD-MSG-016)`,
      `granted ${granted}, sent ${tokens}`,
    );
  },
};

const REQUEST_ORDER: Case = {
  id: "cloud.request.order",
  title:
    "checks a request in the order of PDD-REQ-007: an empty token list is INVALID_ARGUMENT, not TOKENIZER_MISMATCH",
  role: "cloud",
  requirements: ["PDD-REQ-007", "PDD-REQ-009"],
  async run(p) {
    await p.hello(); // no device_model: a token-ID prompt could not be accepted (PDD-REQ-002)
    const invalid = (request: Frame, rule: string) =>
      expectRequestFails(p, request, "ERROR_CODE_INVALID_ARGUMENT", rule);
    await invalid(tokenPrompt(1, [], 4), "PDD-REQ-007 step 3 before step 5");
    await invalid(prefill(2, { targetTpotUs: 1_000_001 }), "PDD-REQ-009");
    await invalid(tokenPrompt(3, [1], 0), "PDD-REQ-007 step 4 before step 5");
  },
};

const REQUEST_TOKEN_IDS_OOV: Case = {
  id: "cloud.request.token-ids-oov",
  title: "refuses a token-ID prompt with an ID not below vocab_size with INVALID_ARGUMENT",
  role: "cloud",
  requirements: ["PDD-REQ-008"],
  async run(p, env) {
    await p.hello();
    tokenIdsOffered(p);
    const vocab = Number(field(p.ack!, "helloAck.cloudModel.vocabSize"));
    // The cloud's own tokenizer: the prompt passes PDD-REQ-002 and fails only on its ID.
    const q = await reopenAsCloudModel(p, env);
    await expectRequestFails(q, tokenPrompt(1, [1, vocab], 4), "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-008");
  },
};

const GOODBYE_THEN_REQUEST: Case = {
  id: "cloud.goodbye.then-request",
  title: "refuses a PrefillRequest after the device's Goodbye with PROTOCOL_VIOLATION, and runs the started one to End",
  role: "cloud",
  requirements: ["PDD-CONN-027"],
  async run(p) {
    // 64 tokens paced for 20 ms each: well inside the test cloud's 3 s request limit on a loaded machine
    // (startStreaming's default 256 took 3 s there and ended TIMEOUT).
    await startStreaming(p, { cloudTokenBudget: 64 });
    p.send({ goodbye: {} });
    await expectRequestFails(p, prefill(2), "ERROR_CODE_PROTOCOL_VIOLATION", "PDD-CONN-027");
    const { end } = await collectToEnd(p, 1, 15_000);
    const expected = "the request started before the Goodbye run to its End (PDD-CONN-015, PDD-CONN-027)";
    expectEnd(end, "END_REASON_BUDGET_EXHAUSTED", expected);
  },
};

const END_MAX_TOKENS: Case = {
  id: "cloud.end.max-tokens",
  title: "ends with MAX_TOKENS when token_count reaches max_tokens, also when max_tokens equals the budget",
  role: "cloud",
  requirements: ["PDD-IDX-004"],
  async run(p) {
    await p.hello();
    for (const [id, budget, maxTokens, want] of [
      [1, 3, 3, "END_REASON_MAX_TOKENS"],
      [2, 8, 3, "END_REASON_MAX_TOKENS"],
      [3, 3, 8, "END_REASON_BUDGET_EXHAUSTED"],
    ] as const) {
      const { reason, count } = await endOf(p, id, { cloudTokenBudget: budget, maxTokens });
      expectThat(
        reason === want && count === Math.min(budget, maxTokens),
        `End{${want}, ${Math.min(budget, maxTokens)}} for budget ${budget}, max_tokens ${maxTokens} (PDD-IDX-004)`,
        `End{${reason}, ${count}}`,
      );
    }
  },
};

const KV_CHUNK_MINIMUM: Case = {
  id: "cloud.kv.chunk-minimum",
  title: "refuses KV asked with a max_chunk_bytes below 4,096 (INVALID_ARGUMENT) and serves the tokens",
  role: "cloud",
  requirements: ["PDD-KV-014", "PDD-KV-001"],
  needs: ["kv"],
  async run(p, env) {
    // The cloud's own model: every other condition of the grant holds (PDD-KV-001).
    const q = await kvSession(p, env);
    q.send(
      prefill(1, {
        cloudTokenBudget: 4,
        kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: 1000, initialCreditBytes: String(1 << 20) },
      }),
    );
    const frames = await q.collect(1);
    const accepted = frames[0]!;
    expectThat(
      accepted.body === "accepted" &&
        field(accepted, "accepted.kv.granted") !== true &&
        field(accepted, "accepted.kv.refusal") === "ERROR_CODE_INVALID_ARGUMENT",
      "KV refused with INVALID_ARGUMENT for max_chunk_bytes 1000 (PDD-KV-014, PDD-KV-001)",
      render(accepted),
    );
    const chunks = frames.filter((f: Frame) => f.body === "kvChunk");
    expectThat(chunks.length === 0, "no KvChunk for a refused grant", `${chunks.length} chunks`);
    const end = frames[frames.length - 1]!;
    expectThat(
      requestIdOf(end) === 1 && field(end, "end.reason") !== "END_REASON_ERROR",
      "the request served without KV",
      render(end),
    );
  },
};

export const CLOUD_1_1_CASES: Case[] = [
  STOP_FIRST_WINS,
  KV_ZERO_CREDIT,
  CODEC_MSGPACK_STRICT,
  REFINE_ROUNDING,
  KV_ABORT,
  CONNECTION_DEVICE_ERROR,
  REQUEST_CONTEXT_GRANT,
  REQUEST_ORDER,
  REQUEST_TOKEN_IDS_OOV,
  HELLO_FIRST_FRAME_BODILESS,
  AUTH_PRECEDENCE,
  HELLO_VERSIONS,
  REQUEST_ID_ZERO,
  GOODBYE_THEN_REQUEST,
  IDLE,
  END_MAX_TOKENS,
  HELLO_MAX_FRAME_MINIMUM,
  KV_CHUNK_MINIMUM,
];
