/**
 * Cloud cases for spec 1.2: RefinedPrompt.scorer, the model that scored the
 * prompt (§8.5). The rule depends on the negotiated minor (PDD-VER-007): a
 * case that offers 1.2 checks the rule of the version the HelloAck names, so
 * a 1.1 cloud passes it as well as a 1.2 one; the other case offers 1.1 and
 * 1.0 and checks that no scorer comes.
 */
import type { Case } from "./case.js";
import { checkServed, expectThat, prefill } from "./cloud-cases.js";
import { field, NotOffered, type Probe } from "./probe.js";
import { render, type Frame } from "./wire.js";

/** The minor that added RefinedPrompt.scorer. */
const SCORER_MINOR = 2;
const REFINE = { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.5 };
const TEXT = "The quick brown fox jumps over the lazy dog and the owls smile at every visitor.";

type Identity = Record<string, unknown>;
const IDENTITY_FIELDS = [
  "name",
  "modelFingerprint",
  "tokenizerFingerprint",
  "vocabSize",
  "contextLength",
  "architecture",
];

const hex = (v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("hex") : String(v));
const is32Bytes = (v: unknown) => v instanceof Uint8Array && v.length === 32;

/** The fields in which two ModelIdentity values differ, compared as the wire carries them. */
function differences(a: Identity, b: Identity): string[] {
  return IDENTITY_FIELDS.filter((k) => hex(a[k] ?? "") !== hex(b[k] ?? ""));
}

/** Greets at `minor`, asks for a refined prompt, and returns the negotiated minor and the request's RefinedPrompt. */
async function refinedAt(p: Probe, minor: number): Promise<{ negotiated: number; refined: Frame }> {
  await p.hello({ versions: [{ major: 1, minor }] });
  if (field(p.ack!, "helloAck.capabilities.refinement") !== true)
    throw new NotOffered("the cloud does not offer refinement");
  const negotiated = field<number>(p.ack!, "helloAck.version.minor") ?? 0;
  expectThat(negotiated <= minor, `a version no higher than the 1.${minor} offered (PDD-VER-002)`, render(p.ack!));
  p.send(prefill(1, { text: TEXT, refine: REFINE }));
  const frames = await p.collect(1);
  expectThat(field(frames[0]!, "accepted.refine.granted") === true, "refinement granted", render(frames[0]!));
  const refined = frames.find((f) => f.body === "refinedPrompt");
  expectThat(refined !== undefined, "a RefinedPrompt for the granted refinement", `${frames.length} frames, none`);
  checkServed(
    frames.filter((f) => f.body !== "refinedPrompt"),
    1,
    4,
  );
  return { negotiated, refined: refined! };
}

/** PDD-REF-011 and PDD-REF-010: the scorer, against the HelloAck's cloud model. */
function checkScorer(scorer: Identity | null | undefined, cloud: Identity, r: Frame): void {
  expectThat(!!scorer, "RefinedPrompt.scorer set under 1.2 (PDD-REF-011)", render(r));
  const s = scorer!;
  expectThat(
    is32Bytes(s.modelFingerprint) && is32Bytes(s.tokenizerFingerprint),
    "scorer's model and tokenizer fingerprints of 32 bytes (PDD-REF-011, Appendix B)",
    render(r),
  );
  expectThat(
    hex(s.tokenizerFingerprint) === hex(cloud.tokenizerFingerprint) && s.vocabSize === cloud.vocabSize,
    `scorer's tokenizer fingerprint and vocab_size those of HelloAck.cloud_model, ${hex(cloud.tokenizerFingerprint)} ` +
      `and ${cloud.vocabSize}: the spans index the cloud's prompt tokens (PDD-REF-010)`,
    render(r),
  );
  if (hex(s.modelFingerprint) !== hex(cloud.modelFingerprint)) return; // another scoring model: its own identity
  const diff = differences(s, cloud);
  expectThat(
    diff.length === 0,
    "the served model scored the prompt (same model fingerprint): scorer equal to HelloAck.cloud_model in every field (PDD-REF-011)",
    `differs in ${diff.join(", ")}: ${render(r)}`,
  );
}

export const CLOUD_1_2_CASES: Case[] = [
  {
    id: "cloud.refine.scorer",
    title: "names the model that scored a refined prompt in RefinedPrompt.scorer under 1.2, with the served tokenizer",
    role: "cloud",
    requirements: ["PDD-REF-011", "PDD-REF-010", "PDD-REF-012", "PDD-VER-002"],
    needs: ["refinement"],
    async run(p) {
      const { negotiated, refined } = await refinedAt(p, SCORER_MINOR);
      const scorer = field<Identity | null>(refined, "refinedPrompt.scorer");
      if (negotiated < SCORER_MINOR) {
        expectThat(!scorer, `no RefinedPrompt.scorer at the 1.${negotiated} negotiated (PDD-REF-012)`, render(refined));
        return;
      }
      checkScorer(scorer, field<Identity>(p.ack!, "helloAck.cloudModel"), refined);
    },
  },
  {
    id: "cloud.refine.scorer-before-1-2",
    title: "sends no RefinedPrompt.scorer to a device that offers 1.1 or 1.0",
    role: "cloud",
    requirements: ["PDD-REF-012", "PDD-VER-007", "PDD-VER-002"],
    needs: ["refinement"],
    async run(p, env) {
      for (const minor of [1, 0]) {
        const q = minor === 1 ? p : await env.open();
        const { refined } = await refinedAt(q, minor);
        expectThat(
          !field(refined, "refinedPrompt.scorer"),
          `no RefinedPrompt.scorer when the device offers 1.${minor} (PDD-REF-012, PDD-VER-007)`,
          render(refined),
        );
        if (q !== p) q.close();
      }
    },
  },
];
