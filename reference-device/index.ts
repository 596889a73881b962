/** Public surface of reference-device/: the reference device peer. */
export { DEFAULT_TARGET_TPOT_MS, PdDevice, type DeviceOptions, type GenerateOptions } from "./device.js";
export type { Emulation, Report, Mode } from "./run.js";
export { templatedPrompt, type Prompt, type TemplatedPrompt } from "./prompt.js";
export { SpeedController, type PaceInput } from "./speed-controller.js";
export { serveOpenAi, type OpenAiServer, type RequestLog, type ServeOptions } from "./openai.js";
export { plan, refinedReadyAt, type PlanInput, type Plan, type Candidate } from "./planner.js";
