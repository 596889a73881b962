/** Public surface of reference-cloud/: the reference cloud peer. */
export { startCloud, readKeys, type CloudPeer } from "./cloud.js";
export {
  CloudConfigSchema,
  loadCloudConfigFile,
  parseCloudConfig,
  type CloudConfig,
  type CloudConfigInput,
} from "./config.js";
export { surprisalDrop, type Refinement, type RefineParams } from "./refine.js";
export { createLogger, type Logger, type LogLevel } from "./log.js";
