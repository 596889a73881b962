/** Public surface of engine/: the llama.cpp layer, the simulated engine and the model tools. */
export { compileChatTemplate, Engine, Slot, llamaRuntime, type EngineOptions, type TemplateMessage } from "./engine.js";
export type { InferenceEngine, InferenceSlot, ModelInfo, Sampling } from "./inference.js";
export { SimEngine, type SimEngineOptions } from "./sim-engine.js";
export { CLOUD_GPU, INSTANT, PHONE, PHONE_NPU, PROFILES, type Profile } from "./profiles.js";
export { loadEngine, SIM_PREFIX } from "./load.js";
export { fingerprints, sameBytes, type Fingerprints } from "./fingerprint.js";
export { readGgufHeader, type GgufHeader } from "./gguf.js";
export { createModel, parameterCount, PRESETS, type ModelShape, type PresetName } from "./model-create.js";
export { SKELETON_TEXT } from "./vocab.js";
export { defaultModelPath, ensureDefaultModel } from "./default-model.js";
