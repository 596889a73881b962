/** The protobuf binary codec (spec/09-codecs.md §9.2). */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Codec, CloudFrameSchema, type CloudFrame } from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode, PddError } from "../errors.js";
import { DEFAULT_MAX_FRAME_BYTES, type CodecOptions, type FrameCodec } from "./codec.js";
import { checkFrameSize } from "./limits.js";
import { decodeTokenFrame } from "./hot-path-decode.js";
import { encodeHotFrame } from "./hot-path-encode.js";
import { checkNesting } from "./nesting.js";

export function createProtoCodec(options: CodecOptions = {}): FrameCodec {
  const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  return {
    name: "proto",
    wire: Codec.PROTO,
    encode<D extends DescMessage>(schema: D, message: MessageShape<D>): Uint8Array {
      if (schema.typeName === CloudFrameSchema.typeName) {
        const fast = encodeHotFrame(message as CloudFrame);
        if (fast !== undefined) return fast;
      }
      return toBinary(schema, message);
    },
    decode<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
      checkFrameSize(bytes.length, max);
      if (schema.typeName === CloudFrameSchema.typeName) {
        const fast = decodeTokenFrame(bytes);
        // D is CloudFrameSchema here, but TypeScript does not narrow a type parameter by a run-time check.
        if (fast !== undefined) return fast as unknown as MessageShape<D>;
      }
      try {
        checkNesting(schema, bytes);
        return fromBinary(schema, bytes);
      } catch (e) {
        throw new PddError(ErrorCode.MALFORMED_FRAME, `invalid ${schema.name} protobuf: ${(e as Error).message}`, {
          local: "ERR_FRAME_DECODE",
          cause: e,
        });
      }
    },
  };
}
