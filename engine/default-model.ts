/**
 * The embedded default model: generated on first use (nothing here can be
 * downloaded) into the package's .pdd-cache folder, or $PDD_CACHE.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createModel, PRESETS, type PresetName } from "./model-create.js";

const root = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../" : "../", import.meta.url));

export function defaultModelPath(preset: PresetName = "tiny"): string {
  return join(process.env.PDD_CACHE ?? join(root, ".pdd-cache"), `pdd-${preset}.gguf`);
}

/** Returns the preset's model path, generating the file first if it is missing. */
export function ensureDefaultModel(preset: PresetName = "tiny", onProgress?: (fraction: number) => void): string {
  const path = defaultModelPath(preset);
  if (!existsSync(path)) createModel(path, PRESETS[preset], onProgress);
  return path;
}
