/**
 * The cloud's validate step on its own: what a request is served with, and
 * the typed refusal of one that cannot be (PDD-REQ-002..004, PDD-LIMIT-003,
 * PDD-KV-001). No engine runs: validation only tokenizes.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import {
  EndReason,
  ErrorCode,
  KvFormat,
  ModelIdentitySchema,
  PddError,
  PrefillRequestSchema,
  RefineMethod,
} from "../proto/index.js";
import { parseCloudConfig } from "./config.js";
import { memoryCloud } from "./test/memory-cloud.js";
import { validateRequest, type ValidateContext } from "./validate.js";

const engine = new SimEngine({ profile: INSTANT, contextSize: 64 });
const context = (over: Partial<ValidateContext> = {}): ValidateContext => ({
  engine,
  limits: parseCloudConfig({ limits: { maxCloudTokenBudget: 16 } }).limits,
  deviceModel: create(ModelIdentitySchema, { ...engine.info }),
  minor: 0,
  draining: false,
  ...over,
});
const request = (over: MessageInitShape<typeof PrefillRequestSchema> = {}) =>
  create(PrefillRequestSchema, { requestId: 1, prompt: { case: "text", value: "abc" }, cloudTokenBudget: 8, ...over });
const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof PddError ? e.code : e;
  }
  return undefined;
};

describe("validating a request at the cloud", () => {
  it("refuses a text too long in bytes to fit the prompt limit without tokenizing it (PDD-REQ-011)", () => {
    const counting = Object.assign(Object.create(engine) as SimEngine, {
      tokenized: 0,
      tokenize(text: string) {
        this.tokenized++;
        return engine.tokenize(text);
      },
    });
    const longest = Math.max(...engine.pieces.map((p) => p.length));
    const huge = request({ prompt: { case: "text", value: "x".repeat(63 * longest + 1) } });
    expect(refusal(() => validateRequest(huge, context({ engine: counting })))).toBe(ErrorCode.PROMPT_TOO_LONG);
    expect(counting.tokenized).toBe(0);
    expect(refusal(() => validateRequest(request(), context({ engine: counting })))).toBeUndefined();
    expect(counting.tokenized).toBe(1);
  });

  it("refuses a display pace slower than one token a second, which would pin a sequence (PDD-REQ-009)", () => {
    expect(refusal(() => validateRequest(request({ targetTpotUs: 1_000_000 }), context()))).toBeUndefined();
    expect(refusal(() => validateRequest(request({ targetTpotUs: 1_000_001 }), context()))).toBe(
      ErrorCode.INVALID_ARGUMENT,
    );
    expect(refusal(() => validateRequest(request({ targetTpotUs: 2 ** 32 - 1 }), context()))).toBe(
      ErrorCode.INVALID_ARGUMENT,
    );
  });

  it("grants the asked budget within the cloud's limit and the context left after the prompt", () => {
    expect(validateRequest(request(), context())).toMatchObject({ prompt: [256, 97, 98, 99], budget: 8 });
    expect(validateRequest(request({ cloudTokenBudget: 100 }), context()).budget).toBe(16);
    const long = request({ prompt: { case: "text", value: "x".repeat(55) }, cloudTokenBudget: 16 });
    expect(validateRequest(long, context()).budget).toBe(64 - 56);
  });

  it("ends at MAX_TOKENS whenever the whole budget is max_tokens tokens, also when it equals the budget asked", () => {
    expect(validateRequest(request({ maxTokens: 4 }), context())).toMatchObject({
      budget: 4,
      budgetEnd: EndReason.MAX_TOKENS,
    });
    // PDD-IDX-004 (1.1): max_tokens == budget is MAX_TOKENS, not BUDGET_EXHAUSTED.
    expect(validateRequest(request({ maxTokens: 8 }), context()).budgetEnd).toBe(EndReason.MAX_TOKENS);
    expect(validateRequest(request({ maxTokens: 9 }), context()).budgetEnd).toBe(EndReason.BUDGET_EXHAUSTED);
    expect(validateRequest(request(), context()).budgetEnd).toBe(EndReason.BUDGET_EXHAUSTED);
  });

  it("ends at CONTEXT_FULL when the budget fills the context, only under 1.1 (PDD-IDX-007)", () => {
    const long = request({ prompt: { case: "text", value: "x".repeat(55) }, cloudTokenBudget: 16 });
    expect(validateRequest(long, context({ minor: 1 }))).toMatchObject({
      budget: 8,
      budgetEnd: EndReason.CONTEXT_FULL,
    });
    expect(validateRequest(long, context()).budgetEnd).toBe(EndReason.BUDGET_EXHAUSTED);
    expect(validateRequest({ ...long, maxTokens: 8 }, context({ minor: 1 })).budgetEnd).toBe(EndReason.MAX_TOKENS);
    expect(validateRequest(request(), context({ minor: 1 })).budgetEnd).toBe(EndReason.BUDGET_EXHAUSTED);
  });

  it("grants refine: {} as the surprisal drop at 0.5 under 1.1, and refuses it under 1.0 (PDD-REF-008)", () => {
    const empty = request({ refine: {} });
    expect(validateRequest(empty, context({ minor: 1 })).refine?.granted).toBe(true);
    expect(validateRequest(empty, context()).refine).toMatchObject({
      granted: false,
      refusal: ErrorCode.UNSUPPORTED_FEATURE,
    });
    const nan = request({ refine: { targetRatio: Number.NaN } });
    expect(validateRequest(nan, context({ minor: 1 })).refine?.refusal).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it("refuses, with a typed code, what cannot be served", () => {
    expect(refusal(() => validateRequest(request(), context({ draining: true })))).toBe(ErrorCode.UNAVAILABLE);
    expect(refusal(() => validateRequest(request({ cloudTokenBudget: 0 }), context()))).toBe(
      ErrorCode.INVALID_ARGUMENT,
    );
    expect(refusal(() => validateRequest(request({ prompt: { case: "text", value: "" } }), context()))).toBe(
      ErrorCode.INVALID_ARGUMENT,
    );
    expect(refusal(() => validateRequest(request({ prompt: { case: undefined } }), context()))).toBe(
      ErrorCode.INVALID_ARGUMENT,
    );
    const tooLong = request({ prompt: { case: "text", value: "x".repeat(63) } });
    expect(refusal(() => validateRequest(tooLong, context()))).toBe(ErrorCode.PROMPT_TOO_LONG);
    const ids = (...t: number[]) => request({ prompt: { case: "tokens", value: { ids: t } } });
    expect(refusal(() => validateRequest(ids(1, 999), context()))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(refusal(() => validateRequest(ids(1, 2), context({ deviceModel: undefined })))).toBe(
      ErrorCode.TOKENIZER_MISMATCH,
    );
    expect(validateRequest(ids(1, 2), context()).prompt).toEqual([1, 2]);
    // PDD-REQ-007: an empty list is INVALID_ARGUMENT before the tokenizer is checked.
    expect(refusal(() => validateRequest(ids(), context({ deviceModel: undefined })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(refusal(() => validateRequest(request({ targetTpotUs: 1_000_001 }), context()))).toBe(
      ErrorCode.INVALID_ARGUMENT,
    );
    expect(validateRequest(request({ targetTpotUs: 1_000_000 }), context()).budget).toBe(8);
  });

  it("grants KV only to the same model, and refinement only by surprisal drop within (0, 1]", () => {
    const kv = request({ kv: { format: KvFormat.LLAMA_SEQ_STATE } });
    expect(validateRequest(kv, context()).kv?.granted).toBe(true);
    const other = create(ModelIdentitySchema, { ...engine.info, modelFingerprint: new Uint8Array(32) });
    expect(validateRequest(kv, context({ deviceModel: other })).kv).toMatchObject({
      granted: false,
      refusal: ErrorCode.MODEL_MISMATCH,
    });
    const refine = (targetRatio: number) =>
      validateRequest(request({ refine: { method: RefineMethod.SURPRISAL_DROP, targetRatio } }), context()).refine;
    expect(
      validateRequest(request({ kv: { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 4096 } }), context()).kv
        ?.granted,
    ).toBe(true);
    // Below the 4,096-byte minimum: refused, never rounded up (PDD-KV-014).
    expect(
      validateRequest(request({ kv: { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 4095 } }), context()).kv,
    ).toMatchObject({ granted: false, refusal: ErrorCode.INVALID_ARGUMENT });
    expect(refine(0.5)?.granted).toBe(true);
    expect(refine(1.5)).toMatchObject({ granted: false, refusal: ErrorCode.INVALID_ARGUMENT });
    expect(validateRequest(request(), context())).toMatchObject({ kv: undefined, refine: undefined });
  });

  it("offers no KV format in HelloAck when the engine cannot export KV, and one when it can (PDD-KV-001 item 1)", async () => {
    const cloud = await memoryCloud();
    const capabilities = async () => {
      const c = await cloud.connect();
      const ack = await c.frame((f) => f.body.case === "helloAck");
      c.device.abort();
      return ack.body.case === "helloAck" ? ack.body.value.capabilities : undefined;
    };
    expect(await capabilities()).toMatchObject({ kvChunks: true, kvFormats: [KvFormat.LLAMA_SEQ_STATE] });
    Object.assign(cloud.engine, { exportsKv: false });
    expect(await capabilities()).toMatchObject({ kvChunks: false, kvFormats: [] });
    cloud.device.abort();
  });

  it("refuses KV with UNSUPPORTED_FEATURE when the engine cannot export it (PDD-KV-001 item 1)", () => {
    const cannot = Object.assign(new SimEngine({ profile: INSTANT, contextSize: 64 }), { exportsKv: false });
    const kv = request({ kv: { format: KvFormat.LLAMA_SEQ_STATE } });
    expect(validateRequest(kv, context({ engine: cannot })).kv).toMatchObject({
      granted: false,
      refusal: ErrorCode.UNSUPPORTED_FEATURE,
    });
  });
});
