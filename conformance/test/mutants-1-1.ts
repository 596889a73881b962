/**
 * Deliberately broken clouds for the spec 1.1 cases, each the 1.0 reference's
 * behaviour on one rule (run through startMutant, conformance/test/mutants.ts).
 * @internal test support
 */
import type { Mutant } from "./mutants.js";

type Msg = Record<string, unknown>;
const body = (f: Msg) => (f as { body?: string }).body;

const END_REASON = { BUDGET_EXHAUSTED: 1, EOS: 3, MAX_TOKENS: 4, ERROR: 6 } as const;

/** The 1.0 reference on a model that ends its answers: End{BUDGET_EXHAUSTED} instead of End{EOS} (issue 14, item 1). */
export const EOS_AS_BUDGET: Mutant = {
  name: "reports end-of-generation as BUDGET_EXHAUSTED",
  mustFail: "cloud.eos",
  down: (f) => {
    const end = f.end as Msg | undefined;
    if (body(f) === "end" && end?.reason === END_REASON.EOS) end.reason = END_REASON.BUDGET_EXHAUSTED;
    return [f];
  },
};

/** The 1.0 reference: a Hello's max_frame_bytes below 64 KiB was ignored and answered with HelloAck (item 2). */
export const SMALL_FRAME_LIMIT_ANSWERED: Mutant = {
  name: "answers a Hello whose max_frame_bytes is below the minimum",
  mustFail: "cloud.hello.max-frame-minimum",
  up: (f) => {
    const hello = f.hello as Msg | undefined;
    if (body(f) === "hello" && hello && Number(hello.maxFrameBytes) < 65_536) hello.maxFrameBytes = 0;
    return [f];
  },
};

/** The 1.0 reference: a max_chunk_bytes below 4,096 was granted, and rounded up to 1,024-byte chunks (item 2). */
export const SMALL_CHUNK_GRANTED: Mutant = {
  name: "grants KV for a max_chunk_bytes below the minimum",
  mustFail: "cloud.kv.chunk-minimum",
  up: (f) => {
    const kv = (f.prefillRequest as Msg | undefined)?.kv as Msg | undefined;
    if (body(f) === "prefillRequest" && kv && Number(kv.maxChunkBytes) < 4096) kv.maxChunkBytes = 0;
    return [f];
  },
};

/** The 1.0 reference: max_tokens equal to the budget ended with BUDGET_EXHAUSTED (item 9). */
export const MAX_TOKENS_AS_BUDGET: Mutant = {
  name: "reports BUDGET_EXHAUSTED when max_tokens equals the budget",
  mustFail: "cloud.end.max-tokens",
  up: (f, s) => {
    const req = f.prefillRequest as Msg | undefined;
    if (body(f) === "prefillRequest" && req && req.maxTokens === req.cloudTokenBudget)
      s[`equal${req.requestId}`] = true;
    return [f];
  },
  down: (f, s) => {
    const end = f.end as Msg | undefined;
    if (body(f) === "end" && end && s[`equal${end.requestId}`] && end.reason === END_REASON.MAX_TOKENS)
      end.reason = END_REASON.BUDGET_EXHAUSTED;
    return [f];
  },
};

/** The 1.0 reference: a Hello listing one major twice was answered (item 19). */
export const DUPLICATE_MAJOR_ANSWERED: Mutant = {
  name: "answers a Hello that lists one major version twice",
  mustFail: "cloud.hello.versions",
  up: (f) => {
    const hello = f.hello as Msg | undefined;
    const versions = hello?.versions as { major: number }[] | undefined;
    if (body(f) === "hello" && versions && versions.length === 2 && versions[0]!.major === versions[1]!.major)
      hello!.versions = [versions[0]];
    return [f];
  },
};

/** A cloud that ignores request-scoped frames with request_id 0 instead of closing (item 14). */
export const ZERO_ID_IGNORED: Mutant = {
  name: "ignores a Takeover with request_id 0",
  mustFail: "cloud.request-id.zero",
  up: (f) => (body(f) === "takeover" && !(f.takeover as Msg).requestId ? [] : [f]),
};

/** The 1.0 reference: a PrefillRequest after the device's Goodbye got no answer (item 15). */
export const REQUEST_AFTER_GOODBYE_IGNORED: Mutant = {
  name: "ignores a PrefillRequest after the device's Goodbye",
  mustFail: "cloud.goodbye.then-request",
  up: (f, s) => {
    if (body(f) === "goodbye") s.bye = true;
    return body(f) === "prefillRequest" && s.bye ? [] : [f];
  },
};

/** The 1.0 reference on its catch path: End{ERROR} with token_count 0 after tokens were sent (item 8). */
export const ERROR_END_COUNTS_ZERO: Mutant = {
  name: "ends a failed request with token_count 0 after sending tokens",
  mustFail: "cloud.request.max-duration",
  down: (f) => {
    const end = f.end as Msg | undefined;
    if (body(f) === "end" && end && end.reason === END_REASON.ERROR) end.tokenCount = 0;
    return [f];
  },
};

/** The 1.0 reference: target_tpot_us over 1 s was served (issue 13.2). */
export const HUGE_TPOT_SERVED: Mutant = {
  name: "serves a target_tpot_us over 1,000,000",
  mustFail: "cloud.request.order",
  up: (f) => {
    const req = f.prefillRequest as Msg | undefined;
    if (body(f) === "prefillRequest" && req && Number(req.targetTpotUs) > 1_000_000) req.targetTpotUs = 0;
    return [f];
  },
};

/** The 1.0 reference: an empty token list without device_model got TOKENIZER_MISMATCH (item 13). */
export const EMPTY_IDS_AS_TOKENIZER: Mutant = {
  name: "checks the tokenizer before an empty token list",
  mustFail: "cloud.request.order",
  up: (f, s) => {
    const req = f.prefillRequest as Msg | undefined;
    const ids = (req?.tokens as Msg | undefined)?.ids as unknown[] | undefined;
    if (body(f) === "prefillRequest" && ids && ids.length === 0) s[`empty${req!.requestId}`] = true;
    return [f];
  },
  down: (f, s) => {
    const err = f.error as Msg | undefined;
    if (body(f) === "error" && err && s[`empty${err.requestId}`]) err.code = 15; // TOKENIZER_MISMATCH
    return [f];
  },
};

/** The 1.0 reference: DeviceFrame.error (field 9) was an unknown body, ignored (item 3). */
export const DEVICE_ERROR_IGNORED: Mutant = {
  name: "ignores the device's Error",
  mustFail: "cloud.connection.device-error",
  up: (f) => (body(f) === "error" ? [] : [f]),
};

/** The 1.0 reference: KvAbort (field 10) was an unknown body, ignored; the transfer went on (item 12). */
export const KV_ABORT_IGNORED: Mutant = {
  name: "ignores KvAbort",
  mustFail: "cloud.kv.abort",
  up: (f) => (body(f) === "kvAbort" ? [] : [f]),
};

/** The 1.0 reference over protobuf: ⌈0.6000000238·n⌉ in doubles keeps one token more when 0.6·n is whole (item 20). */
export const RATIO_ROUNDED_IN_DOUBLES: Mutant = {
  name: "rounds the float32 target_ratio in doubles",
  mustFail: "cloud.refine.rounding",
  down: (f) => {
    const r = f.refinedPrompt as Msg | undefined;
    if (body(f) === "refinedPrompt" && r && Number(r.originalTokens) % 5 === 0)
      r.keptTokens = Math.min(Number(r.originalTokens), Number(r.keptTokens) + 1);
    return [f];
  },
};

/** A cloud where the last Takeover wins (item 19): End carries the last index the device sent. */
export const LAST_TAKEOVER_WINS: Mutant = {
  name: "lets a second Takeover decide",
  mustFail: "cloud.stop.first-wins",
  up: (f, s) => {
    const t = f.takeover as Msg | undefined;
    if (body(f) === "takeover" && t) s[`last${t.requestId}`] = t.index ?? 0;
    return [f];
  },
  down: (f, s) => {
    const end = f.end as Msg | undefined;
    if (body(f) === "end" && end && s[`last${end.requestId}`] !== undefined) end.tokenCount = s[`last${end.requestId}`];
    return [f];
  },
};

/** A cloud that treats initial_credit_bytes 0 as a default grant (item 11). */
export const ZERO_CREDIT_AS_DEFAULT: Mutant = {
  name: "treats initial_credit_bytes 0 as a default",
  mustFail: "cloud.kv.zero-credit",
  up: (f) => {
    const kv = (f.prefillRequest as Msg | undefined)?.kv as Msg | undefined;
    if (body(f) === "prefillRequest" && kv && !Number(kv.initialCreditBytes)) kv.initialCreditBytes = 1 << 20;
    return [f];
  },
};

/** The mutants run against the reference cloud on the tiny model (conformance-1-1.test.ts). */
export const MUTANTS_1_1: (Mutant & { idle?: boolean })[] = [
  SMALL_FRAME_LIMIT_ANSWERED,
  SMALL_CHUNK_GRANTED,
  MAX_TOKENS_AS_BUDGET,
  DUPLICATE_MAJOR_ANSWERED,
  ZERO_ID_IGNORED,
  REQUEST_AFTER_GOODBYE_IGNORED,
  ERROR_END_COUNTS_ZERO,
  HUGE_TPOT_SERVED,
  EMPTY_IDS_AS_TOKENIZER,
  DEVICE_ERROR_IGNORED,
  KV_ABORT_IGNORED,
  RATIO_ROUNDED_IN_DOUBLES,
  LAST_TAKEOVER_WINS,
  ZERO_CREDIT_AS_DEFAULT,
];
