import { ErrorCode, PddError } from "../errors.js";
import type { CodecName, CodecOptions, FrameCodec } from "./codec.js";
import { createMsgpackCodec } from "./msgpack-codec.js";
import { createProtoCodec } from "./proto-codec.js";

export * from "./codec.js";
export { createMsgpackCodec } from "./msgpack-codec.js";
export { createProtoCodec } from "./proto-codec.js";

/** Returns the codec with the given name; an unknown name is UNSUPPORTED_CODEC. */
export function createCodec(name: string, options: CodecOptions = {}): FrameCodec {
  switch (name as CodecName) {
    case "proto":
      return createProtoCodec(options);
    case "msgpack":
      return createMsgpackCodec(options);
    default:
      throw new PddError(ErrorCode.UNSUPPORTED_CODEC, `unknown codec "${name}" (expected proto or msgpack)`, {
        local: "ERR_CODEC_UNKNOWN",
      });
  }
}
export {
  FIRST_FRAME_MAX_BYTES,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_HELLO_LIST_ENTRIES,
  MAX_PINGS_PER_SECOND,
  MAX_REQUESTS_PER_SECOND,
  MAX_TARGET_TPOT_US,
  WRITE_DEADLINE_MS,
} from "./limits.js";
