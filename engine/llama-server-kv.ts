/**
 * llama-server's slot images and node-llama-cpp's sequence images, side by
 * side. Both are `llama_state_seq_save_file` output:
 *
 *   Seq-State-File {
 *     Magic (32) = 0x67677371,   // "ggsq"
 *     Version (32) = 3,
 *     Token-Count (32),
 *     Token (32) ...,            // Token-Count entries
 *     Seq-State (..),            // llama_state_seq_get_data: cells, then K and V rows per layer
 *   }
 *
 * node-llama-cpp (`saveStateToFile`) stores the sequence's tokens as they
 * are. llama-server (`/slots/{id}?action=save`, server_tokens::serialize)
 * stores a packed record in the token array instead:
 *
 *   Server-Tokens { Marker (32) = -1, Version (32) = 1, Count (32), Token (32) ..., Media-Count (32) = 0 }
 *
 * so its Token-Count is Count + 4. Seq-State is the same library's output in
 * both. `toSequenceImage` rewrites the header (and nothing else), which is
 * what a node-llama-cpp device loads.
 * @internal
 */
import { ErrorCode, PddError } from "../proto/index.js";

export const SEQ_STATE_MAGIC = 0x67677371;
export const SEQ_STATE_VERSION = 3;
const SERVER_TOKENS_MARKER = -1;
const SERVER_TOKENS_VERSION = 1;

export interface SeqStateHeader {
  tokens: Int32Array;
  /** Byte offset of Seq-State. */
  stateOffset: number;
}

export function readSeqStateHeader(image: Uint8Array): SeqStateHeader {
  const bad = (why: string) => new PddError(ErrorCode.KV_INTEGRITY, `not a llama sequence-state image: ${why}`);
  if (image.length < 12) throw bad("shorter than its header");
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (view.getUint32(0, true) !== SEQ_STATE_MAGIC) throw bad("wrong magic");
  if (view.getUint32(4, true) !== SEQ_STATE_VERSION) throw bad(`version ${view.getUint32(4, true)}, not 3`);
  const n = view.getUint32(8, true);
  if (12 + 4 * n > image.length) throw bad(`${n} tokens run past the end`);
  const tokens = new Int32Array(n);
  for (let i = 0; i < n; i++) tokens[i] = view.getInt32(12 + 4 * i, true);
  return { tokens, stateOffset: 12 + 4 * n };
}

/** True when the token array holds llama-server's packed record rather than plain tokens. */
export function isServerImage(h: SeqStateHeader): boolean {
  return h.tokens.length >= 4 && h.tokens[0] === SERVER_TOKENS_MARKER && h.tokens[1] === SERVER_TOKENS_VERSION;
}

/**
 * A llama-server slot image as node-llama-cpp writes a sequence image: the
 * packed token record unpacked into a plain token array; Seq-State untouched.
 * An image that already is plain comes back as it is.
 */
export function toSequenceImage(image: Uint8Array): Uint8Array {
  const h = readSeqStateHeader(image);
  if (!isServerImage(h)) return image;
  const count = h.tokens[2]!;
  if (count < 0 || h.tokens.length !== count + 4 || h.tokens[3 + count] !== 0)
    throw new PddError(
      ErrorCode.KV_INTEGRITY,
      `llama-server slot image: a token record of ${h.tokens.length} words cannot hold ${count} tokens and no media`,
    );
  const out = new Uint8Array(12 + 4 * count + (image.length - h.stateOffset));
  const view = new DataView(out.buffer);
  view.setUint32(0, SEQ_STATE_MAGIC, true);
  view.setUint32(4, SEQ_STATE_VERSION, true);
  view.setUint32(8, count, true);
  for (let i = 0; i < count; i++) view.setInt32(12 + 4 * i, h.tokens[3 + i]!, true);
  out.set(image.subarray(h.stateOffset), 12 + 4 * count);
  return out;
}

/** The reverse, for tests and for a fake server: a plain image with the server's packed record. */
export function toServerImage(image: Uint8Array): Uint8Array {
  const h = readSeqStateHeader(image);
  const count = h.tokens.length;
  const out = new Uint8Array(12 + 4 * (count + 4) + (image.length - h.stateOffset));
  const view = new DataView(out.buffer);
  view.setUint32(0, SEQ_STATE_MAGIC, true);
  view.setUint32(4, SEQ_STATE_VERSION, true);
  view.setUint32(8, count + 4, true);
  view.setInt32(12, SERVER_TOKENS_MARKER, true);
  view.setInt32(16, SERVER_TOKENS_VERSION, true);
  view.setInt32(20, count, true);
  for (let i = 0; i < count; i++) view.setInt32(24 + 4 * i, h.tokens[i]!, true);
  view.setInt32(24 + 4 * count, 0, true);
  out.set(image.subarray(h.stateOffset), 28 + 4 * count);
  return out;
}
