/** Public surface of reference-device/: the reference device peer. */
export { PdDevice, type DeviceOptions, type GenerateOptions } from "./device.js";
export type { Report, Mode } from "./run.js";
export { SpeedController, type PaceInput } from "./speed-controller.js";
export { deviceCommand } from "./cli.js";
export { demoCommand } from "./demo.js";
