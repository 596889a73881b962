/**
 * Log-probabilities of the cloud's tokens. The protocol carries none (a
 * TokenBatch has IDs and bytes), so the device computes them on its own
 * model: the catch-up keeps those of the tokens it evaluates (local-pipeline.ts).
 * When it did not evaluate some shown ones (a KV image covered them, or the
 * cloud's tokens were the whole answer), the device scores them after the
 * answer: one more prefill of the prompt and those tokens. A cloud with
 * another tokenizer sent tokens the device's model has no IDs for: their
 * log-probabilities are null.
 * @internal
 */
import type { InferenceEngine, TokenLogprob } from "../engine/index.js";
import type { Report } from "./report.js";

/** Report.logprobs with every cloud token's filled in where the device can score it. */
export async function withCloudLogprobs(
  engine: InferenceEngine,
  promptIds: readonly number[],
  report: Report,
  top: number,
): Promise<(TokenLogprob | null)[]> {
  const k = report.cloudTokenIds.length;
  const known = report.logprobs ?? [];
  const sameTokenizer = report.cloudModel === "same" || report.cloudModel === "same-tokenizer";
  if (known.slice(0, k).every((lp) => lp !== null) || !sameTokenizer || !engine.givesLogprobs) return known;
  return [...(await scoreCloudTokens(engine, promptIds, report.cloudTokenIds, top)), ...known.slice(k)];
}

async function scoreCloudTokens(
  engine: InferenceEngine,
  promptIds: readonly number[],
  ids: readonly number[],
  top: number,
): Promise<(TokenLogprob | null)[]> {
  const slot = await engine.acquire();
  try {
    const scored = await slot.prefill([...promptIds, ...ids], { logprobs: top });
    return ids.map((_, i) => scored.logprobs?.[promptIds.length + i] ?? null);
  } finally {
    await slot.release();
  }
}
