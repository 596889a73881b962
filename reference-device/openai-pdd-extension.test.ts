/** `pdd device serve`'s `pdd` extension: the run's report without token IDs or text, the refinement's scorer kept. */
import { describe, expect, it } from "vitest";
import { pddExtension } from "./openai-generate.js";
import type { Report } from "./run.js";

const report: Report = {
  text: "secret answer",
  mode: "pd",
  ttftMs: 12,
  tpotMs: { p50: 5, max: 9 },
  stalls: 0,
  cloudTokens: 2,
  deviceTokens: 6,
  takeoverIndex: 2,
  prefillMs: { cloud: 3, device: 40 },
  devicePrefilledTokens: 60,
  kvImported: false,
  kv: { asked: false, granted: false },
  refinement: {
    used: true,
    originalTokens: 120,
    keptTokens: 60,
    scorer: {
      name: "scorer-1b",
      modelFingerprint: "ab".repeat(32),
      tokenizerFingerprint: "cd".repeat(32),
      servedModel: false,
    },
  },
  cloudModel: "same",
  cloudTokenIds: [1, 2],
  deviceTokenIds: [3, 4, 5, 6, 7, 8],
};

describe("the pdd extension of pdd device serve", () => {
  it("shows the refinement with its scorer (PDD-REF-014), and no token IDs or text", () => {
    const ext = pddExtension(report) as Record<string, unknown>;
    expect(ext.refinement).toEqual(report.refinement);
    expect(ext).not.toHaveProperty("text");
    expect(ext).not.toHaveProperty("cloudTokenIds");
    expect(ext).not.toHaveProperty("deviceTokenIds");
  });
});
