/**
 * Device cases for spec 1.2 (RefinedPrompt.scorer, §8.5): the suite plays the
 * cloud, at 1.2 when the device offers it.
 */
import type { Case } from "./case.js";
import {
  ackedMinor,
  baselineAnswer,
  expectAnswer,
  expectOwnContinuation,
  expectThat,
  oneTokenRun,
  spansDisagreeWithText,
} from "./device-cases.js";
import { field, NotOffered } from "./probe.js";

export const DEVICE_1_2_CASES: Case[] = [
  {
    id: "device.refine.scorer",
    title: "uses a refined prompt by the cloud's tokenizer, whatever RefinedPrompt.scorer says, and never refuses it",
    role: "device",
    requirements: ["PDD-REF-013", "PDD-REF-007"],
    answer: true,
    async run(p, env) {
      const s = await oneTokenRun(p, {
        refinement: true,
        acceptWith: { refine: true },
        during: (s) => {
          if (field(s.request, "prefillRequest.refine") === null)
            throw new NotOffered("the device does not ask for refinement");
          if (ackedMinor(p) < 2) throw new NotOffered("the device does not offer 1.2");
          // The cloud's tokenizer is not the device's, so only `text` (the whole prompt) is right. The scorer
          // breaks PDD-REF-010 by naming the device's own tokenizer: a device that decides by it takes the
          // spans (one token), and one that checks it refuses a refinement it must not refuse.
          const deviceModel = field<Record<string, unknown>>(s.hello, "hello.deviceModel");
          const tokenizer = deviceModel?.tokenizerFingerprint ?? Buffer.alloc(32, 7);
          const text = field<string>(s.request, "prefillRequest.text");
          p.send({
            refinedPrompt: {
              ...spansDisagreeWithText(s.id, text),
              scorer: {
                name: "a scorer of another tokenizer",
                modelFingerprint: Buffer.alloc(32, 9),
                tokenizerFingerprint: tokenizer,
                vocabSize: 7,
                contextLength: 16,
                architecture: "none",
              },
            },
          });
        },
      });
      expectThat(!s.cancelled, "no Cancel for a RefinedPrompt with an odd scorer (PDD-REF-013)", "a Cancel");
      const out = await expectAnswer(env, s, 1, "PDD-REF-013");
      if (out && env.oracle) await expectOwnContinuation(env.oracle, s, out.text, "PDD-REF-013");
      const expected = out ? await baselineAnswer(env) : undefined;
      if (out && expected !== undefined)
        expectThat(
          out.text === expected,
          `the answer of the full prompt (RefinedPrompt.text, not the spans: PDD-REF-007 by the cloud's tokenizer, ` +
            `not the scorer's, PDD-REF-013): ${JSON.stringify(expected.slice(0, 60))}`,
          JSON.stringify(out.text.slice(0, 60)),
        );
    },
  },
];
