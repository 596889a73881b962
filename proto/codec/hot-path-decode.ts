/**
 * Hand-written decoder for the two per-token frames, CloudFrame.first_token
 * and CloudFrame.token_batch. It accepts exactly the canonical encoding the
 * fast encoder writes (and any other encoder writes for these fields); on
 * anything else — another body, an unknown field, a non-canonical wire type,
 * a truncation — it returns undefined and the caller uses `fromBinary`,
 * which also produces the error. A differential fuzz test holds it equal to
 * `fromBinary` on every input.
 * @internal
 */
import type { CloudFrame, Token } from "../gen/pdd/v1/pdd_pb.js";

// Reading state; a module-level cursor avoids allocating one per frame.
let buf: Uint8Array = new Uint8Array(0);
let pos = 0;

/** Reads a varint of at most 32 bits; -1 when malformed or longer. */
function uint32(end: number): number {
  let result = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (pos >= end) return -1;
    const b = buf[pos++]!;
    if (shift === 28) {
      if (b > 0x0f) return -1; // more than 32 bits
      return (result | (b << 28)) >>> 0;
    }
    result |= (b & 0x7f) << shift;
    if (b < 0x80) return result >>> 0;
  }
  return -1;
}

function token(end: number): Token | undefined {
  let id = 0;
  let piece: Uint8Array = EMPTY;
  while (pos < end) {
    const tag = buf[pos++]!;
    if (tag === 0x08) {
      id = uint32(end);
      if (id < 0) return undefined;
    } else if (tag === 0x12) {
      const n = uint32(end);
      if (n < 0 || pos + n > end) return undefined;
      piece = buf.subarray(pos, pos + n);
      pos += n;
    } else return undefined;
  }
  return { $typeName: "pdd.v1.Token", id, piece };
}

const EMPTY = new Uint8Array(0);

/** Decodes a FirstToken or TokenBatch CloudFrame, or returns undefined. */
export function decodeTokenFrame(bytes: Uint8Array): CloudFrame | undefined {
  buf = bytes;
  pos = 0;
  const outer = bytes[pos++];
  if (outer !== 0x22 && outer !== 0x1a) return undefined;
  const len = uint32(bytes.length);
  if (len < 0 || pos + len !== bytes.length) return undefined;
  const end = bytes.length;
  let requestId = 0;
  if (outer === 0x22) {
    let startIndex = 0;
    const tokens: Token[] = [];
    while (pos < end) {
      const tag = bytes[pos++]!;
      if (tag === 0x08) requestId = uint32(end);
      else if (tag === 0x10) startIndex = uint32(end);
      else if (tag === 0x1a) {
        const n = uint32(end);
        if (n < 0 || pos + n > end) return undefined;
        const t = token(pos + n);
        if (!t) return undefined;
        tokens.push(t);
        continue;
      } else return undefined;
      if (requestId < 0 || startIndex < 0) return undefined;
    }
    return {
      $typeName: "pdd.v1.CloudFrame",
      body: { case: "tokenBatch", value: { $typeName: "pdd.v1.TokenBatch", requestId, startIndex, tokens } },
    };
  }
  let tok: Token | undefined;
  let queueUs = 0;
  let prefillUs = 0;
  while (pos < end) {
    const tag = bytes[pos++]!;
    if (tag === 0x08) requestId = uint32(end);
    else if (tag === 0x18) queueUs = uint32(end);
    else if (tag === 0x20) prefillUs = uint32(end);
    else if (tag === 0x12) {
      if (tok) return undefined; // a repeated message field merges; leave it to fromBinary
      const n = uint32(end);
      if (n < 0 || pos + n > end) return undefined;
      tok = token(pos + n);
      if (!tok) return undefined;
      continue;
    } else return undefined;
    if (requestId < 0 || queueUs < 0 || prefillUs < 0) return undefined;
  }
  return {
    $typeName: "pdd.v1.CloudFrame",
    body: { case: "firstToken", value: { $typeName: "pdd.v1.FirstToken", requestId, token: tok, queueUs, prefillUs } },
  };
}
