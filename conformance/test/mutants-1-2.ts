/**
 * Deliberately broken clouds for the spec 1.2 cases (RefinedPrompt.scorer,
 * §8.5), each breaking one rule through startMutant (conformance/test/mutants.ts).
 * @internal test support
 */
import type { Mutant } from "./mutants.js";

type Msg = Record<string, unknown>;
const body = (f: Msg) => (f as { body?: string }).body;

/** The negotiated minor, remembered from the HelloAck that passes by. */
function noteVersion(f: Msg, s: Msg): void {
  const ack = f.helloAck as Msg | undefined;
  if (body(f) !== "helloAck" || !ack) return;
  s.minor = Number((ack.version as Msg | undefined)?.minor ?? 0);
  s.cloudModel = ack.cloudModel;
}

/** Applies `change` to every RefinedPrompt sent at a negotiated minor `at` accepts. */
function onRefined(at: (minor: number) => boolean, change: (r: Msg, s: Msg) => void): Mutant["down"] {
  return (f, s) => {
    noteVersion(f, s);
    const r = f.refinedPrompt as Msg | undefined;
    if (body(f) === "refinedPrompt" && r && at(Number(s.minor ?? 0))) change(r, s);
    return [f];
  };
}

/** A 1.1 cloud that negotiates 1.2 and sends RefinedPrompt as before (PDD-REF-011). */
export const SCORER_MISSING: Mutant = {
  name: "sends no RefinedPrompt.scorer at 1.2",
  mustFail: "cloud.refine.scorer",
  down: onRefined(
    (m) => m >= 2,
    (r) => {
      delete r.scorer;
    },
  ),
};

/** Scores with a model of another tokenizer, whose spans would not index the cloud's prompt tokens (PDD-REF-010). */
export const SCORER_OTHER_TOKENIZER: Mutant = {
  name: "names a scorer with another tokenizer fingerprint",
  mustFail: "cloud.refine.scorer",
  down: onRefined(
    (m) => m >= 2,
    (r) => {
      const scorer = r.scorer as Msg | undefined;
      if (!scorer) return;
      const fp = Buffer.from(scorer.tokenizerFingerprint as Uint8Array);
      fp[0]! ^= 0xff;
      scorer.tokenizerFingerprint = fp;
    },
  ),
};

/** Names the served model, but not as HelloAck.cloud_model does (its trained context length, PDD-REF-011). */
export const SCORER_UNLIKE_CLOUD_MODEL: Mutant = {
  name: "names the served model otherwise than HelloAck.cloud_model",
  mustFail: "cloud.refine.scorer",
  down: onRefined(
    (m) => m >= 2,
    (r) => {
      const scorer = r.scorer as Msg | undefined;
      if (scorer) scorer.contextLength = Number(scorer.contextLength) + 1;
    },
  ),
};

/** Sends the 1.2 field to a device that negotiated 1.1 or 1.0 (PDD-REF-012, PDD-VER-007). */
export const SCORER_BEFORE_1_2: Mutant = {
  name: "sends RefinedPrompt.scorer below 1.2",
  mustFail: "cloud.refine.scorer-before-1-2",
  down: onRefined(
    (m) => m < 2,
    (r, s) => {
      r.scorer = s.cloudModel;
    },
  ),
};

/** Run against the reference cloud at 1.2 (conformance-1-2.test.ts). */
export const MUTANTS_1_2: Mutant[] = [
  SCORER_MISSING,
  SCORER_OTHER_TOKENIZER,
  SCORER_UNLIKE_CLOUD_MODEL,
  SCORER_BEFORE_1_2,
];
