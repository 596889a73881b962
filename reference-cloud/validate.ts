/**
 * The validate step of a request at the cloud: its prompt's tokens, the
 * budget granted, and the answers to its KV and refinement asks
 * (PDD-REQ-002..004, PDD-LIMIT-003, PDD-KV-001). A refused request gets the
 * PddError thrown here as its Error, then End, and nothing else. Pure.
 */
import {
  EndReason,
  ErrorCode,
  KvFormat,
  MAX_TARGET_TPOT_US,
  MIN_KV_CHUNK_BYTES,
  PddError,
  RefineMethod,
  type KvRequest,
  type ModelIdentity,
  type PrefillRequest,
  type RefineRequest,
} from "../proto/index.js";
import { sameBytes, type InferenceEngine } from "../engine/index.js";
import type { CloudConfig } from "./config.js";

/** The answer to a KV or refinement ask, as Accepted carries it. */
export interface Grant {
  granted: boolean;
  refusal: ErrorCode;
  detail: string;
}

/** What a valid request will be served with. */
export interface RequestPlan {
  prompt: number[];
  budget: number;
  /** How the request ends when it sends its whole budget: MAX_TOKENS when that is max_tokens tokens (PDD-IDX-004). */
  budgetEnd: EndReason;
  kv: Grant | undefined;
  refine: Grant | undefined;
}

export interface ValidateContext {
  engine: Pick<InferenceEngine, "info" | "contextSize" | "tokenize" | "pieces" | "scoresPrompts" | "exportsKv">;
  limits: CloudConfig["limits"];
  /** The model the device declared in its Hello. */
  deviceModel: ModelIdentity | undefined;
  /** The negotiated minor version: CONTEXT_FULL and the refine defaults are 1.1 rules (PDD-VER-007). */
  minor: number;
  draining: boolean;
}

/** The checks in the order of PDD-REQ-007 (steps 2 to 7; the ID and capacity are the connection's). */
export function validateRequest(req: PrefillRequest, c: ValidateContext): RequestPlan {
  const { engine, limits } = c;
  if (c.draining) throw new PddError(ErrorCode.UNAVAILABLE, "cloud is draining", { retryable: true });
  const p = req.prompt;
  if (p.case === undefined || (p.case === "text" ? p.value.length === 0 : p.value.ids.length === 0))
    throw new PddError(ErrorCode.INVALID_ARGUMENT, "no prompt, or an empty one (PDD-REQ-003)");
  if (req.cloudTokenBudget < 1)
    throw new PddError(ErrorCode.INVALID_ARGUMENT, "cloud_token_budget must be at least 1 (PDD-REQ-004)");
  // A slower pace would hold a sequence for hours per token (issue 13, item 2).
  if (req.targetTpotUs > MAX_TARGET_TPOT_US)
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      `target_tpot_us ${req.targetTpotUs} is over ${MAX_TARGET_TPOT_US} (PDD-REQ-009)`,
    );
  const maxPrompt = Math.min(limits.maxPromptTokens ?? engine.contextSize, engine.contextSize - 1);
  refuseLongText(req, maxPrompt, engine);
  const prompt = promptTokens(req, c);
  if (prompt.length > maxPrompt)
    throw new PddError(
      ErrorCode.PROMPT_TOO_LONG,
      `prompt has ${prompt.length} tokens; the limit is ${maxPrompt} (PDD-LIMIT-003)`,
    );
  let budget = Math.min(req.cloudTokenBudget, limits.maxCloudTokenBudget, engine.contextSize - prompt.length);
  if (req.maxTokens > 0) budget = Math.min(budget, req.maxTokens);
  return {
    prompt,
    budget,
    budgetEnd: budgetEnd(req, prompt.length, budget, c),
    kv: req.kv ? kvGrant(req.kv, c.deviceModel, engine.info.modelFingerprint, engine.exportsKv !== false) : undefined,
    refine: req.refine
      ? refineGrant(refineWithDefaults(req.refine, c.minor), engine.scoresPrompts !== false)
      : undefined,
  };
}

/** The End reason of a request that sends its whole budget (PDD-IDX-004). */
function budgetEnd(req: PrefillRequest, prompt: number, budget: number, c: ValidateContext): EndReason {
  // The whole answer is complete at max_tokens, whatever the budget.
  if (req.maxTokens > 0 && budget === req.maxTokens) return EndReason.MAX_TOKENS;
  // The tokens fill the context: under 1.1 the device learns why it got fewer (PDD-IDX-007).
  if (c.minor >= 1 && prompt + budget === c.engine.contextSize) return EndReason.CONTEXT_FULL;
  return EndReason.BUDGET_EXHAUSTED;
}

/**
 * The refinement asked, with 1.1's defaults for the fields left at 0: the
 * surprisal drop at ratio 0.5 (PDD-REF-008). Under 1.0 the zeros stand and
 * are refused (PDD-REF-001).
 */
export function refineWithDefaults(r: RefineRequest, minor: number): RefineRequest {
  if (minor < 1) return r;
  return {
    ...r,
    method: r.method === RefineMethod.UNSPECIFIED ? RefineMethod.SURPRISAL_DROP : r.method,
    targetRatio: r.targetRatio === 0 ? 0.5 : r.targetRatio,
  };
}

/** The most bytes of text one token of the vocabulary stands for (PDD-REQ-011's L), by engine. */
const longestPiece = new WeakMap<object, number>();

/**
 * PDD-REQ-011: a text longer than max_prompt_tokens × L bytes has more than
 * max_prompt_tokens tokens, so it is refused without tokenizing it (a 4 MB
 * prompt held the event loop for 1.7 s, issue 13, item 5).
 */
function refuseLongText(req: PrefillRequest, maxPrompt: number, engine: Pick<InferenceEngine, "pieces">): void {
  if (req.prompt.case !== "text") return;
  let l = longestPiece.get(engine);
  if (l === undefined) {
    l = 1;
    for (const p of engine.pieces) l = Math.max(l, p.length);
    longestPiece.set(engine, l);
  }
  // The UTF-8 length is at most 3 bytes per UTF-16 unit: no need to encode a text that is short anyway.
  const text = req.prompt.value;
  if (text.length * 3 <= maxPrompt * l) return;
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > maxPrompt * l)
    throw new PddError(
      ErrorCode.PROMPT_TOO_LONG,
      `prompt of ${bytes} bytes has more than ${maxPrompt} tokens (at most ${l} bytes a token; PDD-REQ-011)`,
    );
}

function promptTokens(req: PrefillRequest, c: ValidateContext): number[] {
  const { engine } = c;
  if (req.prompt.case === "text") {
    try {
      return engine.tokenize(req.prompt.value);
    } catch (e) {
      if (e instanceof PddError) throw e;
      throw new PddError(ErrorCode.INVALID_ARGUMENT, "the prompt cannot be tokenized (PDD-TOK-002)", { cause: e });
    }
  }
  if (req.prompt.case === "tokens") {
    const dm = c.deviceModel;
    if (!dm || !sameBytes(dm.tokenizerFingerprint, engine.info.tokenizerFingerprint)) {
      throw new PddError(ErrorCode.TOKENIZER_MISMATCH, "token-id prompts need the cloud's tokenizer (PDD-REQ-002)");
    }
    const prompt = [...req.prompt.value.ids];
    if (prompt.some((t) => t >= engine.info.vocabSize))
      throw new PddError(ErrorCode.INVALID_ARGUMENT, "token id outside the vocabulary (PDD-REQ-008)");
    return prompt;
  }
  throw new PddError(ErrorCode.INVALID_ARGUMENT, "no prompt (PDD-REQ-003)");
}

const GRANTED: Grant = { granted: true, refusal: ErrorCode.UNSPECIFIED, detail: "" };

export function kvGrant(
  kv: KvRequest,
  deviceModel: ModelIdentity | undefined,
  modelFingerprint: Uint8Array,
  exportsKv = true,
): Grant {
  if (kv.format !== KvFormat.LLAMA_SEQ_STATE)
    return {
      granted: false,
      refusal: ErrorCode.UNSUPPORTED_FEATURE,
      detail: "only KV_FORMAT_LLAMA_SEQ_STATE is implemented",
    };
  // Not in HelloAck.capabilities.kv_formats either (PDD-KV-001 item 1): e.g. llama-server without a shared
  // --slot-save-path, whose export failed the request mid-answer when KV was granted anyway.
  if (!exportsKv)
    return {
      granted: false,
      refusal: ErrorCode.UNSUPPORTED_FEATURE,
      detail: "this cloud's engine cannot export KV state",
    };
  if (!deviceModel || !sameBytes(deviceModel.modelFingerprint, modelFingerprint)) {
    return { granted: false, refusal: ErrorCode.MODEL_MISMATCH, detail: "model fingerprints differ (PDD-KV-001)" };
  }
  if (kv.maxChunkBytes > 0 && kv.maxChunkBytes < MIN_KV_CHUNK_BYTES)
    return {
      granted: false,
      refusal: ErrorCode.INVALID_ARGUMENT,
      detail: `max_chunk_bytes ${kv.maxChunkBytes} is below the minimum of ${MIN_KV_CHUNK_BYTES} (PDD-KV-014)`,
    };
  return { ...GRANTED };
}

export function refineGrant(r: RefineRequest, scoresPrompts = true): Grant {
  if (!scoresPrompts)
    return {
      granted: false,
      refusal: ErrorCode.UNSUPPORTED_FEATURE,
      detail: "this cloud's engine gives no prompt log-probabilities to score a refinement with",
    };
  if (r.method !== RefineMethod.SURPRISAL_DROP)
    return {
      granted: false,
      refusal: ErrorCode.UNSUPPORTED_FEATURE,
      detail: "only REFINE_METHOD_SURPRISAL_DROP is implemented",
    };
  if (!(r.targetRatio > 0 && r.targetRatio <= 1))
    return { granted: false, refusal: ErrorCode.INVALID_ARGUMENT, detail: "target_ratio must be in (0, 1]" };
  return { ...GRANTED };
}
