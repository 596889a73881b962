/** What a device run reports (pdd device --json prints it), and the reasons it gives. */
import type { TokenLogprob } from "../engine/index.js";

export type Mode = "pd" | "local" | "fallback";

export interface Report {
  text: string;
  mode: Mode;
  ttftMs: number;
  tpotMs: { p50: number; max: number };
  stalls: number;
  cloudTokens: number;
  deviceTokens: number;
  takeoverIndex: number | null;
  prefillMs: { cloud: number | null; device: number | null };
  /** Prompt tokens the device prefilled itself: fewer than the prompt when the cloud's tokens were the whole answer first. */
  devicePrefilledTokens: number;
  kvImported: boolean;
  /** What the cloud said about KV: not asked, granted, or refused with a registry code; why a granted image was not used. */
  kv: { asked: boolean; granted: boolean; refusal?: string; reason?: string };
  refinement: {
    used: boolean;
    originalTokens: number;
    keptTokens: number;
    /** The model that chose the kept tokens (RefinedPrompt.scorer, since 1.2; PDD-REF-014); absent below 1.2. */
    scorer?: ScorerReport;
  } | null;
  /** Why a refinement the options asked for was not used (issue 16: it silently never happened). */
  refinementReason?: string;
  /** How the cloud's model relates to the device's: KV needs "same", token IDs "same-tokenizer" (null: no cloud). */
  cloudModel: "same" | "same-tokenizer" | "different" | null;
  /** Token IDs shown: the cloud's [0, k) then the device's. */
  cloudTokenIds: number[];
  deviceTokenIds: number[];
  /**
   * With GenerateOptions.logprobs: each shown token's, in the order of the IDs
   * (the device's own from its sampling; the cloud's computed on the device,
   * null when its tokenizer is not the device's).
   */
  logprobs?: (TokenLogprob | null)[];
  /** Why the cloud was not (fully) used, for fallback runs: `cause: detail`. */
  fallbackReason?: string;
  /** The cause alone, one word (README, "Exit status and failure causes"). */
  fallbackCause?: string;
  /**
   * The device's model failed during the answer and the device recomputed it
   * from what was on screen: why. Set whether or not the cloud was still in use
   * (after the cloud's part is done, nothing else would say so).
   */
  recovered?: string;
  endReason?: string;
  /** Set when the answer was cut at the model's context (max tokens lowered to fit). */
  stoppedAtContext?: boolean;
  /** Measured ms per locally decoded token, when the device decoded. */
  localDecodeMs?: number;
  /** The cloud's prompt tokens (Accepted.prompt_tokens), for its prefill rate. */
  cloudPromptTokens?: number;
  /** The rate the cloud decoded (and sent) at: End.usage decoded_tokens / decode_us. */
  cloudDecodeTokPerS?: number;
  /** Tokens the cloud decoded for this request, sent or not (End.usage): its decode cost, against cloud-only's. */
  cloudDecodedTokens?: number;
}

/** RefinedPrompt.scorer as a report shows it: fingerprints in hex, and whether it is the cloud's served model. */
export interface ScorerReport {
  name: string;
  modelFingerprint: string;
  tokenizerFingerprint: string;
  /** Its model fingerprint is HelloAck.cloud_model's: the served model scored the prompt (PDD-REF-011). */
  servedModel: boolean;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * The scorer a RefinedPrompt named, for the report only: it changes nothing in how the refined prompt is used, and an
 * odd one (another tokenizer, no fingerprints) is shown as it came, never refused (PDD-REF-013).
 */
export function scorerReport(
  scorer: { name: string; modelFingerprint: Uint8Array; tokenizerFingerprint: Uint8Array } | undefined,
  cloudModelFingerprint: Uint8Array | undefined,
): { scorer?: ScorerReport } {
  if (!scorer) return {};
  const model = hex(scorer.modelFingerprint);
  const served = cloudModelFingerprint !== undefined && model === hex(cloudModelFingerprint);
  return {
    scorer: {
      name: scorer.name,
      modelFingerprint: model,
      tokenizerFingerprint: hex(scorer.tokenizerFingerprint),
      servedModel: served,
    },
  };
}

/** Why a refinement the options asked for did not happen, if it did not. */
export function whyNotRefined(
  asked: boolean,
  requested: boolean,
  refinement: Report["refinement"],
  cloudFailed: boolean,
): string | undefined {
  if (!asked || refinement?.used) return undefined;
  if (!requested) return "not asked: KV was asked instead (the cloud runs this model)";
  if (cloudFailed) return "the cloud failed before its refined prompt was used";
  if (!refinement) return "the cloud sent no refined prompt before the device had prefilled the prompt";
  return "the refined prompt came too late: it was not shorter than what the device had left to prefill";
}
