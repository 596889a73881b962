/** Public surface of engine/: the llama.cpp layer and the model tools. */
export { Engine, Slot, llamaRuntime, sameBytes, type EngineOptions, type ModelInfo, type Sampling } from "./engine.js";
export { fingerprints, type Fingerprints } from "./fingerprint.js";
export { readGgufHeader, type GgufHeader } from "./gguf.js";
export { createModel, parameterCount, PRESETS, type ModelShape, type PresetName } from "./model-create.js";
export { SKELETON_TEXT } from "./vocab.js";
export { defaultModelPath, ensureDefaultModel } from "./default-model.js";
