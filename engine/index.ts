/** Public surface of engine/: the llama.cpp layer, the simulated engine and the model tools. */
export { compileChatTemplate, Engine, Slot, llamaRuntime, type EngineOptions, type TemplateMessage } from "./engine.js";
export type {
  BackendStatus,
  InferenceEngine,
  InferenceSlot,
  ModelInfo,
  Sampling,
  TokenLogprob,
} from "./inference.js";
export { backendUrl, LlamaServerEngine, type LlamaServerEngineOptions } from "./llama-server-engine.js";
export { toSequenceImage } from "./llama-server-kv.js";
export { BACKEND_APIS, type BackendApi } from "./llama-server-openai.js";
export { SimEngine, type SimEngineOptions } from "./sim-engine.js";
export { CLOUD_GPU, INSTANT, PHONE, PHONE_NPU, PROFILES, type Profile } from "./profiles.js";
export { loadEngine, SIM_PREFIX } from "./load.js";
export { fingerprints, sameBytes, type Fingerprints } from "./fingerprint.js";
export { readGgufHeader, type GgufHeader } from "./gguf.js";
export {
  CHATML_TEMPLATE,
  createModel,
  parameterCount,
  PRESETS,
  type ModelShape,
  type PresetName,
} from "./model-create.js";
export { SKELETON_TEXT } from "./vocab.js";
export { defaultModelPath, ensureDefaultModel } from "./default-model.js";
export { bundleHead, llamaCppSource, llamaCppVersion, type LlamaCppSource } from "./llama-cpp-source.js";
export {
  ensureLlamaServer,
  findLlamaServer,
  LLAMA_SERVER_CMAKE_FLAGS,
  llamaServerDir,
  type EnsureOptions,
  type LlamaServerBuild,
} from "./llama-server-build.js";
export {
  llamaServerArgs,
  startLlamaServer,
  type LlamaServerProcess,
  type LlamaServerProcessOptions,
} from "./llama-server-process.js";
