/**
 * Log-probabilities of the cloud's tokens. The protocol carries none (a
 * TokenBatch has IDs and bytes), so the device scores the cloud's shown
 * tokens itself after the answer: one prefill of the prompt and those tokens
 * with probabilities, on its own model. That costs the prompt's prefill once
 * more; the catch-up, which evaluates most of these tokens anyway, does not
 * keep their probabilities (yet). A cloud with another tokenizer sent tokens
 * the device's model has no IDs for: their log-probabilities are null.
 * @internal
 */
import type { InferenceEngine, TokenLogprob } from "../engine/index.js";
import type { Report } from "./report.js";

export async function scoreCloudTokens(
  engine: InferenceEngine,
  promptIds: readonly number[],
  report: Report,
  top: number,
): Promise<(TokenLogprob | null)[]> {
  const ids = report.cloudTokenIds;
  if (ids.length === 0) return [];
  const sameTokenizer = report.cloudModel === "same" || report.cloudModel === "same-tokenizer";
  if (!sameTokenizer || !engine.givesLogprobs) return ids.map(() => null);
  const slot = await engine.acquire();
  try {
    const scored = await slot.prefill([...promptIds, ...ids], { logprobs: top });
    return ids.map((_, i) => scored.logprobs?.[promptIds.length + i] ?? null);
  } finally {
    await slot.release();
  }
}
