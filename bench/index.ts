/**
 * Public surface of bench/: what runs both peers together — the demo, and the
 * trace simulation with its live replay and llama.cpp cross-check. The
 * benchmark scripts (*.bench.ts) are entry points, not imported.
 */
export {
  DEFAULT_NOTES,
  DEVICE_SPEEDS,
  demoPrompt,
  deviceSetting,
  runDemo,
  type DemoOptions,
  type DemoRow,
  type DemoRun,
  type DeviceSetting,
  type DeviceSpeed,
} from "./demo.js";
export {
  batchingComparison,
  liveMarkdown,
  markdown,
  median,
  runTraceBench,
  VALIDATION_NOTE,
  writePlots,
  type Row,
} from "./sim/bench.js";
export { NO_BATCHING, slowdown, VLLM_H100_8B, type BatchingModel } from "./sim/batching.js";
export { SHAPES, synthesize, type Shape } from "./sim/shapes.js";
export { crossCheck, type CrossOptions, type CrossRow } from "./sim/crosscheck.js";
export { DEFAULT_LIVE, replayLive, type LiveConfig, type LiveMode, type LiveRun } from "./sim/live.js";
export { CLOUD_GPU, PHONE, PHONE_NPU, PROFILES, type Profile } from "./sim/profiles.js";
export { simulate, type Mode, type RequestResult, type SimConfig } from "./sim/simulate.js";
export { readTrace, TraceError, type TraceRequest } from "./sim/trace.js";
