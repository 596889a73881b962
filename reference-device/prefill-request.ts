/** The PrefillRequest a run sends, as the planner shaped it. @internal */
import { create } from "@bufbuild/protobuf";
import { KvFormat, PrefillRequestSchema, RefineMethod, type PrefillRequest } from "../proto/index.js";
import type { RunOptions } from "./run.js";

/**
 * The request as the planner shaped it: KV when the models match and it pays,
 * else refinement if asked. `tokens`: the prompt's token IDs, sent in place of
 * its text (PDD-REQ-002: only to a cloud that takes them with this tokenizer).
 */
export function prefillRequest(
  requestId: number,
  prompt: { text: string; tokens?: readonly number[] },
  o: RunOptions,
  wantKv: boolean,
): PrefillRequest {
  const refineRatio = wantKv ? undefined : o.refineRatio;
  return create(PrefillRequestSchema, {
    requestId,
    prompt:
      prompt.tokens !== undefined
        ? { case: "tokens", value: { ids: [...prompt.tokens] } }
        : { case: "text", value: prompt.text },
    sampling: {
      temperature: o.sampling?.temperature ?? 0,
      topK: o.sampling?.topK ?? 0,
      topP: o.sampling?.topP ?? 0,
      seed: BigInt(o.sampling?.seed ?? 0),
    },
    maxTokens: o.maxTokens,
    cloudTokenBudget: Math.max(1, Math.min(o.cloudBudget, o.maxTokens)),
    kv: wantKv
      ? { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 1 << 20, initialCreditBytes: 8n << 20n }
      : undefined,
    refine:
      refineRatio !== undefined
        ? { method: RefineMethod.SURPRISAL_DROP, targetRatio: refineRatio, minKeepTokens: 4, keepTailTokens: 8 }
        : undefined,
    targetTpotUs: Math.round(o.targetTpotMs * 1000),
  });
}
