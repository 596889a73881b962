import { describe, expect, it } from "vitest";
import type { ModelInfo } from "../engine/index.js";
import { scorerIdentity, servedIdentity } from "./identity.js";

const fp = (seed: number) => Uint8Array.from({ length: 32 }, (_, i) => (i + seed) & 0xff);
const model = (name: string, seed: number, contextLength: number): ModelInfo => ({
  name,
  modelFingerprint: fp(seed),
  tokenizerFingerprint: fp(100),
  vocabSize: 384,
  contextLength,
  architecture: "llama",
});
const served = { info: model("served", 1, 8192), contextSize: 2048 };

describe("RefinedPrompt.scorer at the reference cloud (spec §8.5)", () => {
  it("is absent below 1.2 (PDD-REF-012)", () => {
    expect(scorerIdentity(served, 0)).toBeUndefined();
    expect(scorerIdentity(served, 1)).toBeUndefined();
    expect(scorerIdentity({ ...served, scoringModel: model("small", 2, 512) }, 1)).toBeUndefined();
  });

  it("is HelloAck.cloud_model, field for field, when the served model scores (PDD-REF-011)", () => {
    expect(servedIdentity(served).contextLength).toBe(2048);
    expect(scorerIdentity(served, 2)).toEqual(servedIdentity(served));
    // The served model's own file loaded again to score (llama-server --refine-model on the served GGUF).
    expect(scorerIdentity({ ...served, scoringModel: model("copy", 1, 4096) }, 2)).toEqual(servedIdentity(served));
  });

  it("is the scoring model's own identity when another model scores", () => {
    const small = model("small", 2, 512);
    expect(scorerIdentity({ ...served, scoringModel: small }, 2)).toEqual(small);
  });
});
