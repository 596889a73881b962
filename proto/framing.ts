/**
 * Length-prefixed framing for byte-stream transports (spec/09-codecs.md §9.4):
 *
 *   Length-Prefixed-Frame {
 *     Length (32),          // unsigned, big-endian, bytes of Payload
 *     Payload (Length * 8),
 *   }
 *
 * The decoder is an explicit two-state machine (header, payload). It checks
 * Length against the limit as soon as the 4 header bytes are in, before it
 * allocates or buffers the payload, and slices without copying whenever a
 * payload lies inside one received chunk.
 */
import { ErrorCode, PddError } from "./errors.js";
import { DEFAULT_MAX_FRAME_BYTES } from "./codec/codec.js";

export const LENGTH_PREFIX_BYTES = 4;

/** The 4-byte header for a payload of `length` bytes. */
export function frameHeader(length: number): Uint8Array {
  const h = new Uint8Array(LENGTH_PREFIX_BYTES);
  new DataView(h.buffer).setUint32(0, length, false);
  return h;
}

/** Header and payload in one buffer (one copy); see `frameHeader` to avoid it. */
export function lengthPrefixed(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, false);
  out.set(payload, LENGTH_PREFIX_BYTES);
  return out;
}

export class FrameDecoder {
  readonly maxFrameBytes: number;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  /** Payload length of the frame being read, or -1 while reading a header. */
  private need = -1;
  /** The limit of the next frame: `firstFrameMaxBytes` until one frame is read, then `maxFrameBytes`. */
  private limit: number;

  /**
   * `firstFrameMaxBytes` bounds the stream's first frame alone (PDD-LIMIT-002:
   * a cloud's 64 KiB before the Hello), judged on its header before any of it
   * is buffered.
   */
  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES, firstFrameMaxBytes?: number) {
    this.maxFrameBytes = maxFrameBytes;
    this.limit = Math.min(firstFrameMaxBytes ?? maxFrameBytes, maxFrameBytes);
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Feeds bytes; returns every frame they complete, in order. Throws
   * PddError(FRAME_TOO_LARGE) the moment a header announces an oversize frame.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < LENGTH_PREFIX_BYTES) break;
        const header = this.take(LENGTH_PREFIX_BYTES);
        const length = new DataView(header.buffer, header.byteOffset, LENGTH_PREFIX_BYTES).getUint32(0, false);
        if (length > this.limit) {
          this.reset();
          throw new PddError(
            ErrorCode.FRAME_TOO_LARGE,
            `frame header announces ${length} bytes; the limit is ${this.limit}`,
            {
              local: "ERR_FRAME_TOO_LARGE",
            },
          );
        }
        this.need = length;
      }
      if (this.buffered < this.need) break;
      frames.push(this.take(this.need));
      this.need = -1;
      this.limit = this.maxFrameBytes;
    }
    return frames;
  }

  /** Call at end of stream: throws MALFORMED_FRAME if a frame was cut short. */
  end(): void {
    if (this.need >= 0 || this.buffered > 0) {
      const have = this.buffered;
      const want = this.need >= 0 ? `${this.need}-byte payload` : "4-byte header";
      this.reset();
      throw new PddError(ErrorCode.MALFORMED_FRAME, `stream ended inside a frame (${have} bytes of a ${want})`, {
        local: "ERR_FRAME_TRUNCATED",
      });
    }
  }

  private reset(): void {
    this.chunks = [];
    this.buffered = 0;
    this.need = -1;
  }

  /** Removes exactly n buffered bytes (n <= buffered). */
  private take(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}
