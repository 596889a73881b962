/**
 * The embedded default model: generated on first use (nothing here can be
 * downloaded) into the package's .pdd-cache folder, or $PDD_CACHE.
 */
import { existsSync } from "node:fs";
import { readGgufHeader } from "./gguf.js";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createModel, PRESETS, type ModelShape, type PresetName } from "./model-create.js";

const root = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../" : "../", import.meta.url));

export function defaultModelPath(preset: PresetName = "tiny"): string {
  return join(process.env.PDD_CACHE ?? join(root, ".pdd-cache"), `pdd-${preset}.gguf`);
}

/**
 * Returns the preset's model path, generating the file first if it is missing,
 * unreadable, or cached by a version whose preset had another chat template
 * (tiny gained one): the template is outside the fingerprints, so a peer with
 * the old file still runs the same model.
 */
export function ensureDefaultModel(preset: PresetName = "tiny", onProgress?: (fraction: number) => void): string {
  const path = defaultModelPath(preset);
  if (!existsSync(path) || cachedTemplate(path) !== templateOf(PRESETS[preset]))
    createModel(path, PRESETS[preset], onProgress);
  return path;
}

const templateOf = (shape: ModelShape): string | undefined => shape.chatTemplate;

/** The cached file's chat template; null when its header cannot be read (regenerate it). */
function cachedTemplate(path: string): string | undefined | null {
  try {
    const t = readGgufHeader(path).metadata.get("tokenizer.chat_template");
    return typeof t === "string" ? t : undefined;
  } catch {
    return null;
  }
}
