/**
 * Model and tokenizer fingerprints of a GGUF file, as spec Appendix B
 * defines them: content hashes, never of the path. Hashing streams the
 * tensor data; results are cached per (path, size, mtime).
 */
import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { readGgufHeader, type GgufHeader } from "./gguf.js";

/** Byte-wise equality, for comparing fingerprints. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

export interface Fingerprints {
  model: Uint8Array;
  tokenizer: Uint8Array;
}

const cache = new Map<string, Fingerprints>();

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** B.2, over the strings' stored bytes (B.0). */
export function tokenizerFingerprint(h: GgufHeader): Uint8Array {
  const m = h.metadata;
  const hash = createHash("sha256");
  hash.update("pdd.v1/tokenizer\n");
  const model = h.rawStrings.get("tokenizer.ggml.model")?.[0] ?? Buffer.alloc(0);
  hash.update(model);
  hash.update(Buffer.from([0]));
  const tokens = h.rawStrings.get("tokenizer.ggml.tokens") ?? [];
  const scores = m.get("tokenizer.ggml.scores") as number[] | undefined;
  const types = m.get("tokenizer.ggml.token_type") as number[] | undefined;
  hash.update(u32(tokens.length));
  const f = Buffer.alloc(4);
  tokens.forEach((bytes, i) => {
    hash.update(u32(bytes.length));
    hash.update(bytes);
    f.writeFloatLE(scores?.[i] ?? 0);
    hash.update(f);
    f.writeInt32LE(types?.[i] ?? 0);
    hash.update(f);
  });
  const merges = h.rawStrings.get("tokenizer.ggml.merges") ?? [];
  hash.update(u32(merges.length));
  for (const bytes of merges) {
    hash.update(u32(bytes.length));
    hash.update(bytes);
  }
  // Any integer type, modulo 2^32 (B.2 step 5).
  const id = (k: string) =>
    u32(m.has(k) ? Number(BigInt.asUintN(32, BigInt(m.get(k) as number | bigint))) : 0xffffffff);
  hash.update(id("tokenizer.ggml.bos_token_id"));
  hash.update(id("tokenizer.ggml.eos_token_id"));
  hash.update(id("tokenizer.ggml.padding_token_id"));
  const addBos = m.has("tokenizer.ggml.add_bos_token")
    ? m.get("tokenizer.ggml.add_bos_token") === true
    : model.toString("latin1") === "llama";
  hash.update(Buffer.from([addBos ? 1 : 0]));
  return new Uint8Array(hash.digest());
}

/** Table B-1: block size (elements) and block bytes of each GGML type (llama.cpp release v0.4.0). */
const TYPE_BYTES: Record<number, [block: number, bytes: number]> = {
  0: [1, 4], // F32
  1: [1, 2], // F16
  2: [32, 18], // Q4_0
  3: [32, 20], // Q4_1
  6: [32, 22], // Q5_0
  7: [32, 24], // Q5_1
  8: [32, 34], // Q8_0
  9: [32, 36], // Q8_1
  10: [256, 84], // Q2_K
  11: [256, 110], // Q3_K
  12: [256, 144], // Q4_K
  13: [256, 176], // Q5_K
  14: [256, 210], // Q6_K
  15: [256, 292], // Q8_K
  16: [256, 66], // IQ2_XXS
  17: [256, 74], // IQ2_XS
  18: [256, 98], // IQ3_XXS
  19: [256, 50], // IQ1_S
  20: [32, 18], // IQ4_NL
  21: [256, 110], // IQ3_S
  22: [256, 82], // IQ2_S
  23: [256, 136], // IQ4_XS
  24: [1, 1], // I8
  25: [1, 2], // I16
  26: [1, 4], // I32
  27: [1, 8], // I64
  28: [1, 8], // F64
  29: [256, 56], // IQ1_M
  30: [1, 2], // BF16
  34: [256, 54], // TQ1_0
  35: [256, 66], // TQ2_0
  39: [32, 17], // MXFP4
  40: [64, 36], // NVFP4
  41: [128, 18], // Q1_0
  42: [64, 18], // Q2_0
};

/** Bytes of a tensor's data (B.1 step 3.4): no alignment padding. */
function tensorSize(t: GgufHeader["tensors"][number]): number {
  const [block, bytes] = TYPE_BYTES[t.type]!;
  return (t.dims.reduce((a, b) => a * Number(b), 1) / block) * bytes;
}

/** Hashes `n` bytes of `fd` from `pos` into `hash`, in 8 MiB reads. */
function hashRange(fd: number, hash: Hash, pos: number, n: number, path: string): void {
  const buf = Buffer.alloc(Math.min(8 << 20, Math.max(n, 1)));
  while (n > 0) {
    const got = readSync(fd, buf, 0, Math.min(buf.length, n), pos);
    if (got <= 0) throw new Error(`${path}: tensor data runs past the end of the file`);
    hash.update(buf.subarray(0, got));
    n -= got;
    pos += got;
  }
}

/** PDD-FP-005: a file with a tensor type outside Table B-1 is hashed whole, under its own domain string. */
function wholeFileFingerprint(fd: number, size: number, path: string): Uint8Array {
  const hash = createHash("sha256").update("pdd.v1/model-file\n");
  hashRange(fd, hash, 0, size, path);
  return new Uint8Array(hash.digest());
}

/** B.1 over the tensors of `h`, read from `fd`. */
function tensorFingerprint(h: GgufHeader, tok: Uint8Array, fd: number, path: string): Uint8Array {
  const hash = createHash("sha256");
  hash.update("pdd.v1/model\n");
  hash.update(tok);
  for (const t of h.tensors) {
    hash.update(t.nameBytes);
    hash.update(Buffer.from([0]));
    hash.update(u32(t.type));
    const dims = Buffer.alloc(8 * (t.dims.length + 1));
    dims.writeBigUInt64LE(BigInt(t.dims.length), 0);
    t.dims.forEach((d, k) => {
      dims.writeBigUInt64LE(d, 8 * (k + 1));
    });
    hash.update(dims);
    hashRange(fd, hash, h.dataOffset + Number(t.offset), tensorSize(t), path);
  }
  return new Uint8Array(hash.digest());
}

/** B.1 and B.2 for the GGUF file at `path`. */
export function fingerprints(path: string): Fingerprints {
  const st = statSync(path);
  const key = `${path}\0${st.size}\0${st.mtimeMs}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const h = readGgufHeader(path); // GGUF v2 or v3 only (PDD-FP-004)
  const tok = tokenizerFingerprint(h);
  const fd = openSync(path, "r");
  let model: Uint8Array;
  try {
    model = h.tensors.every((t) => TYPE_BYTES[t.type])
      ? tensorFingerprint(h, tok, fd, path)
      : wholeFileFingerprint(fd, st.size, path);
  } finally {
    closeSync(fd);
  }
  const result = { model, tokenizer: tok };
  cache.set(key, result);
  return result;
}
