/**
 * Model and tokenizer fingerprints of a GGUF file, as spec Appendix B
 * defines them: content hashes, never of the path. Hashing streams the
 * tensor data; results are cached per (path, size, mtime).
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { readGgufHeader, type GgufHeader, type GgufValue } from "./gguf.js";

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

/** B.2 */
export function tokenizerFingerprint(h: GgufHeader): Uint8Array {
  const m = h.metadata;
  const hash = createHash("sha256");
  hash.update("pdd.v1/tokenizer\n");
  const model = String(m.get("tokenizer.ggml.model") ?? "");
  hash.update(Buffer.from(model, "utf8"));
  hash.update(Buffer.from([0]));
  const tokens = (m.get("tokenizer.ggml.tokens") as GgufValue[] | undefined) ?? [];
  const scores = m.get("tokenizer.ggml.scores") as number[] | undefined;
  const types = m.get("tokenizer.ggml.token_type") as number[] | undefined;
  hash.update(u32(tokens.length));
  const f = Buffer.alloc(4);
  tokens.forEach((t, i) => {
    const bytes = Buffer.from(String(t), "utf8");
    hash.update(u32(bytes.length));
    hash.update(bytes);
    f.writeFloatLE(scores?.[i] ?? 0);
    hash.update(f);
    f.writeInt32LE(types?.[i] ?? 0);
    hash.update(f);
  });
  const merges = (m.get("tokenizer.ggml.merges") as GgufValue[] | undefined) ?? [];
  hash.update(u32(merges.length));
  for (const mg of merges) {
    const bytes = Buffer.from(String(mg), "utf8");
    hash.update(u32(bytes.length));
    hash.update(bytes);
  }
  const id = (k: string) => u32(m.has(k) ? Number(m.get(k)) : 0xffffffff);
  hash.update(id("tokenizer.ggml.bos_token_id"));
  hash.update(id("tokenizer.ggml.eos_token_id"));
  hash.update(id("tokenizer.ggml.padding_token_id"));
  const addBos = m.has("tokenizer.ggml.add_bos_token")
    ? m.get("tokenizer.ggml.add_bos_token") === true
    : model === "llama";
  hash.update(Buffer.from([addBos ? 1 : 0]));
  return new Uint8Array(hash.digest());
}

const TYPE_BYTES: Record<number, [block: number, bytes: number]> = {
  0: [1, 4], // F32
  1: [1, 2], // F16
  2: [32, 18], // Q4_0
  3: [32, 20], // Q4_1
  6: [32, 22], // Q5_0
  7: [32, 24], // Q5_1
  8: [32, 34], // Q8_0
  30: [1, 2], // BF16
};

/** Bytes of a tensor's data; for types without an entry, the distance to the next tensor (or EOF). */
function tensorSize(h: GgufHeader, i: number, fileSize: number): number {
  const t = h.tensors[i]!;
  const n = t.dims.reduce((a, b) => a * Number(b), 1);
  const tb = TYPE_BYTES[t.type];
  if (tb) return (n / tb[0]) * tb[1];
  const next = h.tensors.slice(i + 1).find((x) => x.offset > t.offset);
  return (next ? Number(next.offset) : fileSize - h.dataOffset) - Number(t.offset);
}

/** B.1 and B.2 for the GGUF file at `path`. */
export function fingerprints(path: string): Fingerprints {
  const st = statSync(path);
  const key = `${path}\0${st.size}\0${st.mtimeMs}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const h = readGgufHeader(path);
  const tok = tokenizerFingerprint(h);
  const hash = createHash("sha256");
  hash.update("pdd.v1/model\n");
  hash.update(tok);
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(8 << 20);
    h.tensors.forEach((t, i) => {
      hash.update(Buffer.from(t.name, "utf8"));
      hash.update(Buffer.from([0]));
      hash.update(u32(t.type));
      const dims = Buffer.alloc(8 * (t.dims.length + 1));
      dims.writeBigUInt64LE(BigInt(t.dims.length), 0);
      t.dims.forEach((d, k) => {
        dims.writeBigUInt64LE(d, 8 * (k + 1));
      });
      hash.update(dims);
      let left = tensorSize(h, i, st.size);
      let pos = h.dataOffset + Number(t.offset);
      while (left > 0) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, left), pos);
        if (n <= 0) throw new Error(`${path}: tensor ${t.name} runs past the end of the file`);
        hash.update(buf.subarray(0, n));
        left -= n;
        pos += n;
      }
    });
  } finally {
    closeSync(fd);
  }
  const result = { model: new Uint8Array(hash.digest()), tokenizer: tok };
  cache.set(key, result);
  return result;
}
