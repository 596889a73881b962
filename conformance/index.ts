/** Public surface of conformance/: the suite, its reports and its coverage. */
export {
  runConformance,
  runDeviceConformance,
  type RunOptions,
  type DeviceRunOptions,
  type DeviceLauncher,
  TargetError,
} from "./runner.js";
export { TargetUnreachable, type UnreachableKind } from "./reach.js";
export { execLauncher } from "./launcher.js";
export { table, junit, junitUnreachable, STATUS_LABEL } from "./report.js";
export { coverage, coverageProblems, renderCoverage, ALL_CASES, NOT_BLACK_BOX } from "./coverage.js";
export type { Case, CaseResult, Status, DeviceOutcome } from "./case.js";
export { fuzzCloud, replayInput, FuzzFailure, type FuzzCause, type FuzzReport } from "./fuzz.js";
export { fuzzDevice, type DeviceFuzzReport } from "./fuzz-device.js";
export { mutator } from "./mutator.js";
export type { Codec } from "./wire.js";
export type { ModelOracle } from "./oracle.js";
