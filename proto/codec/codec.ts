/**
 * A frame codec turns one envelope (DeviceFrame or CloudFrame) into the bytes
 * of one PDD frame and back (spec/09-codecs.md). Codecs know nothing about
 * transports: the transport delimits frames, the codec fills them.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Codec } from "../gen/pdd/v1/pdd_pb.js";

export type CodecName = "proto" | "msgpack";

export interface FrameCodec {
  readonly name: CodecName;
  /** The Codec enum value announced in Hello/HelloAck. */
  readonly wire: Codec;
  /** Encodes a message; never fails for a well-typed message. */
  encode<D extends DescMessage>(schema: D, message: MessageShape<D>): Uint8Array;
  /**
   * Decodes one frame. Throws only PddError: MALFORMED_FRAME for bytes that
   * are not a valid frame, FRAME_TOO_LARGE when `bytes` exceeds the limit.
   */
  decode<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D>;
}

export interface CodecOptions {
  /** Frames larger than this are refused before decoding. Default 4 MiB (spec §11). */
  maxFrameBytes?: number;
}

/** Spec default for max_frame_bytes (spec/11-limits.md). */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** The smallest non-zero max_frame_bytes a peer may announce: what every peer accepts before HelloAck (PDD-MSG-012). */
export const MIN_MAX_FRAME_BYTES = 65_536;

/** The smallest non-zero max_chunk_bytes / max_kv_chunk_bytes (PDD-KV-014). */
export const MIN_KV_CHUNK_BYTES = 4096;

export const CODEC_NAMES: readonly CodecName[] = ["proto", "msgpack"];

export function codecFromWire(c: Codec): CodecName | undefined {
  return c === Codec.PROTO ? "proto" : c === Codec.MSGPACK ? "msgpack" : undefined;
}
