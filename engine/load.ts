/** Loads the engine a model argument names: a GGUF path, or `sim:PROFILE` for the simulated engine. */
import { ErrorCode, PddError } from "../proto/index.js";
import { Engine, type EngineOptions } from "./engine.js";
import type { InferenceEngine } from "./inference.js";
import { PROFILES } from "./profiles.js";
import { SimEngine } from "./sim-engine.js";

export const SIM_PREFIX = "sim:";

export async function loadEngine(options: EngineOptions): Promise<InferenceEngine> {
  if (!options.modelPath.startsWith(SIM_PREFIX)) return Engine.load(options);
  const name = options.modelPath.slice(SIM_PREFIX.length);
  const profile = PROFILES[name];
  if (!profile)
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      `no simulated-engine profile "${name}"; there are ${Object.keys(PROFILES)
        .map((p) => SIM_PREFIX + p)
        .join(", ")}`,
    );
  return new SimEngine({ profile, sequences: options.sequences, contextSize: options.contextSize });
}
