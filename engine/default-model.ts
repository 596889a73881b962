/**
 * The embedded default model: generated on first use (nothing here can be
 * downloaded) into the package's .pdd-cache folder, or $PDD_CACHE.
 */
import { existsSync } from "node:fs";
import { readGgufHeader } from "./gguf.js";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createModel, PRESETS, type ModelShape, type PresetName } from "./model-create.js";
import { buildVocab } from "./vocab.js";

const root = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../" : "../", import.meta.url));

export function defaultModelPath(preset: PresetName = "tiny"): string {
  return join(process.env.PDD_CACHE ?? join(root, ".pdd-cache"), `pdd-${preset}.gguf`);
}

/**
 * Returns the preset's model path, generating the file first if it is missing,
 * unreadable, or cached by a version whose preset had another chat template
 * (tiny gained one: outside the fingerprints, so a peer with the old file
 * still runs the same model) or another vocabulary size (the "a" presets
 * gained ChatML's control tokens: another model, whose file must be replaced).
 */
export function ensureDefaultModel(preset: PresetName = "tiny", onProgress?: (fraction: number) => void): string {
  const path = defaultModelPath(preset);
  const shape: ModelShape = PRESETS[preset];
  const cached = existsSync(path) ? cachedShape(path) : null;
  if (
    cached === null ||
    cached.template !== shape.chatTemplate ||
    cached.vocabSize !== buildVocab(shape.vocab, shape.chatTokens).length
  )
    createModel(path, shape, onProgress);
  return path;
}

/** The cached file's chat template and vocabulary size; null when its header cannot be read (regenerate it). */
function cachedShape(path: string): { template: string | undefined; vocabSize: number } | null {
  try {
    const meta = readGgufHeader(path).metadata;
    const t = meta.get("tokenizer.chat_template");
    const tokens = meta.get("tokenizer.ggml.tokens");
    return { template: typeof t === "string" ? t : undefined, vocabSize: Array.isArray(tokens) ? tokens.length : -1 };
  } catch {
    return null;
  }
}
