/**
 * `pd-device`: the package's top-level surface, for the common jobs. Run a
 * device (`PdDevice`) or a cloud (`startCloud`), open a raw connection
 * (`connect`), encode and decode frames (`createCodec` with the frame
 * schemas), and handle errors (`PddError`, `ErrorCode`). Everything else
 * has its own entry point: `pd-device/proto`, `/transports`, `/engine`,
 * `/cloud`, `/device` and `/conformance`.
 *
 * Importing it loads neither node-llama-cpp (only a llama model does) nor the
 * conformance suite.
 */
export {
  PdDevice,
  type DeviceOptions,
  type GenerateOptions,
  type Mode,
  type Report,
} from "./reference-device/index.js";
export { startCloud, type CloudConfigInput, type CloudPeer } from "./reference-cloud/index.js";
export {
  connect,
  type ClientOptions,
  type CloseInfo,
  type CloudStream,
  type DeviceStream,
  type MessageStream,
} from "./transports/index.js";
export { loadEngine, type InferenceEngine } from "./engine/index.js";
export {
  CloudFrameSchema,
  CODEC_NAMES,
  createCodec,
  DeviceFrameSchema,
  ErrorCode,
  PddError,
  PROTOCOL_MAJOR,
  PROTOCOL_MINOR,
  type CloudFrame,
  type CodecName,
  type DeviceFrame,
  type FrameCodec,
} from "./proto/index.js";
