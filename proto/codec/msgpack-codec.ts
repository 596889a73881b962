/**
 * The MessagePack codec (spec/09-codecs.md §9.3): the proto3 JSON form of the
 * envelope, as a MessagePack map, validated with zod on the way in.
 */
import type { DescMessage, Message, MessageShape } from "@bufbuild/protobuf";
import { Packr, Unpackr } from "msgpackr";
import { Codec } from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode, PddError } from "../errors.js";
import { DEFAULT_MAX_FRAME_BYTES, type CodecOptions, type FrameCodec } from "./codec.js";
import { checkFrameSize } from "./limits.js";
import { msgpackProblem } from "./msgpack-scan.js";
import { encoderFor, schemaFor } from "./plain-mapping.js";

// Plain MessagePack only: no msgpackr records or other extensions, so any
// MessagePack library can read and write these frames.
const packOptions = { useRecords: false, moreTypes: false, bundleStrings: false, variableMapSize: true } as const;

export function createMsgpackCodec(options: CodecOptions = {}): FrameCodec {
  const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const packr = new Packr(packOptions);
  const unpackr = new Unpackr({ ...packOptions, mapsAsObjects: true, int64AsType: "bigint" });
  return {
    name: "msgpack",
    wire: Codec.MSGPACK,
    encode<D extends DescMessage>(schema: D, message: MessageShape<D>): Uint8Array {
      return packr.pack(encoderFor(schema)(message as Message));
    },
    decode<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
      checkFrameSize(bytes.length, max);
      const problem = msgpackProblem(bytes); // PDD-CODEC-013
      if (problem)
        throw new PddError(ErrorCode.MALFORMED_FRAME, `invalid MessagePack: ${problem}`, { local: "ERR_FRAME_DECODE" });
      let plain: unknown;
      try {
        plain = unpackr.unpack(bytes);
      } catch (e) {
        throw new PddError(ErrorCode.MALFORMED_FRAME, `invalid MessagePack: ${(e as Error).message}`, {
          local: "ERR_FRAME_DECODE",
          cause: e,
        });
      }
      if (!validStrings(plain, bytes))
        throw new PddError(ErrorCode.MALFORMED_FRAME, "a MessagePack str is not valid UTF-8 (PDD-CODEC-015)", {
          local: "ERR_FRAME_DECODE",
        });
      if (plain === null || typeof plain !== "object" || Array.isArray(plain) || plain instanceof Uint8Array) {
        throw new PddError(ErrorCode.MALFORMED_FRAME, `${schema.name} must be a MessagePack map`, {
          local: "ERR_FRAME_SCHEMA",
        });
      }
      const result = schemaFor(schema).safeParse(plain);
      if (!result.success) {
        const issue = result.error.issues[0];
        const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
        throw new PddError(
          ErrorCode.MALFORMED_FRAME,
          `invalid ${schema.name}${where}: ${issue?.message ?? "schema error"}`,
          {
            local: "ERR_FRAME_SCHEMA",
            cause: result.error,
          },
        );
      }
      return result.data as MessageShape<D>;
    },
  };
}

/**
 * msgpackr decodes a str that is not UTF-8 with U+FFFD in place of the bad
 * bytes, where the proto codec refuses the frame (issue 13, item 11: such a
 * prompt was served over msgpack only). A decoded string holding U+FFFD is
 * valid only if its UTF-8 encoding appears as such in the frame: a replaced
 * byte never encodes back to itself. Strings without U+FFFD cost one scan.
 */
function validStrings(value: unknown, frame: Uint8Array): boolean {
  if (typeof value === "string")
    return !value.includes("\uFFFD") || Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).includes(value);
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return true;
  if (Array.isArray(value)) return value.every((v) => validStrings(v, frame));
  return Object.entries(value).every(([k, v]) => validStrings(k, frame) && validStrings(v, frame));
}
