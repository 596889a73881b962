/**
 * The spec's test vectors (spec/vectors/) against the reference engine and
 * against the independent Python implementation, so that neither the vectors
 * nor the code can drift from Appendix B and C.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, fingerprints } from "../engine/index.js";
import { VECTOR_MODEL, VECTORS_DIR } from "./vectors/generate.js";
import { TOKENIZATION_TEXTS } from "./vectors/texts.js";

const model = join(VECTORS_DIR, VECTOR_MODEL);
const expectedFp = JSON.parse(readFileSync(join(VECTORS_DIR, "fingerprints.json"), "utf8")) as {
  model_fingerprint: string;
  tokenizer_fingerprint: string;
  vocab_size: number;
};
const vectors = (
  JSON.parse(readFileSync(join(VECTORS_DIR, "tokenization.json"), "utf8")) as {
    vectors: { text: string; ids: number[] }[];
  }
).vectors;
const hasPython = spawnSync("python3", ["--version"]).status === 0;

describe("spec test vectors", () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ modelPath: model, contextSize: 256 });
  });
  afterAll(() => engine?.close());

  it("fingerprints of spec.gguf are the engine's Appendix B hashes", () => {
    const fp = fingerprints(model);
    expect(Buffer.from(fp.model).toString("hex")).toBe(expectedFp.model_fingerprint);
    expect(Buffer.from(fp.tokenizer).toString("hex")).toBe(expectedFp.tokenizer_fingerprint);
    expect(engine.info.vocabSize).toBe(expectedFp.vocab_size);
  });

  it("cover every text of texts.ts, in order", () => {
    expect(vectors.map((v) => v.text)).toEqual(TOKENIZATION_TEXTS.map((t) => t.text));
  });

  it("prompt tokens are what llama.cpp gives for each text (PDD-TOK-001)", () => {
    const got = vectors.map((v) => ({ text: v.text, ids: engine.tokenize(v.text) }));
    expect(got).toEqual(vectors.map((v) => ({ text: v.text, ids: v.ids })));
  });

  it.skipIf(!hasPython)("are recomputed from the spec's text by the independent check.py", () => {
    const out = execFileSync("python3", [join(VECTORS_DIR, "check.py")], { encoding: "utf8" });
    expect(out).toMatch(/^(\d+) of \1 checks passed$/m);
  });
});
