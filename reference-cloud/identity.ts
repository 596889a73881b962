/**
 * The model identities the cloud sends: the served model in HelloAck, and
 * the scoring model in RefinedPrompt.scorer (spec §8.5). Pure.
 */
import { sameBytes, type InferenceEngine, type ModelInfo } from "../engine/index.js";

/** HelloAck.cloud_model: the served model, with the positions one request gets, not the trained length (PDD-MSG-016). */
export function servedIdentity(e: Pick<InferenceEngine, "info" | "contextSize">): ModelInfo {
  return { ...e.info, contextLength: e.contextSize };
}

/** The minor from which RefinedPrompt carries `scorer` (PDD-REF-011, PDD-REF-012). */
export const SCORER_SINCE_MINOR = 2;

/**
 * RefinedPrompt.scorer at the negotiated minor: the scoring model's identity at 1.2 and later, which is
 * cloud_model itself when the served model scores (PDD-REF-011); nothing below 1.2 (PDD-REF-012).
 */
export function scorerIdentity(
  e: Pick<InferenceEngine, "info" | "contextSize" | "scoringModel">,
  minor: number,
): ModelInfo | undefined {
  if (minor < SCORER_SINCE_MINOR) return undefined;
  const s = e.scoringModel;
  // The served model's own file, loaded again to score: it is the served model, named as cloud_model is.
  if (!s || sameBytes(s.modelFingerprint, e.info.modelFingerprint)) return servedIdentity(e);
  return s;
}
