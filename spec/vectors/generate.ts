/**
 * `npx tsx spec/vectors/generate.ts`: writes the expected values of the spec's
 * test vectors from the reference engine (llama.cpp through node-llama-cpp):
 * fingerprints.json (Appendix B) and tokenization.json (Appendix C) for
 * spec.gguf, which is `pdd model create --preset spec --out spec/vectors/spec.gguf`.
 * vectors.test.ts checks that the committed files still match; check.py
 * recomputes them independently.
 */
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Engine, fingerprints } from "../../engine/index.js";
import { TOKENIZATION_TEXTS } from "./texts.js";

export const VECTORS_DIR = fileURLToPath(new URL("./", import.meta.url));
export const VECTOR_MODEL = "spec.gguf";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

async function main(): Promise<void> {
  const path = join(VECTORS_DIR, VECTOR_MODEL);
  const fp = fingerprints(path);
  const engine = await Engine.load({ modelPath: path, contextSize: 256 });
  try {
    const fps = {
      file: VECTOR_MODEL,
      model_fingerprint: hex(fp.model),
      tokenizer_fingerprint: hex(fp.tokenizer),
      vocab_size: engine.info.vocabSize,
    };
    writeFileSync(join(VECTORS_DIR, "fingerprints.json"), `${JSON.stringify(fps, null, 2)}\n`);
    const vectors = TOKENIZATION_TEXTS.map(({ text, covers }) => ({ text, covers, ids: engine.tokenize(text) }));
    // Non-ASCII as \u escapes: an implementer sees exactly which code points a text holds.
    const ascii = (json: string) =>
      json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    const lines = vectors.map((v) => `    ${ascii(JSON.stringify(v))}`);
    writeFileSync(
      join(VECTORS_DIR, "tokenization.json"),
      `{\n  "file": "${VECTOR_MODEL}",\n  "vectors": [\n${lines.join(",\n")}\n  ]\n}\n`,
    );
    console.log(`${vectors.length} tokenization vectors; model ${fps.model_fingerprint}`);
  } finally {
    await engine.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) await main();
