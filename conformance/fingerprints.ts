/**
 * The suite's own Appendix B fingerprints of a GGUF file: a GGUF reader
 * written for the suite, so a case can check the fingerprints a peer
 * announces without trusting the implementation's hashing (PDD-FP-001/002).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/** Table B-1: bytes per block and elements per block of the GGML tensor types. */
const GGML_TYPES: Record<number, [bytes: number, elements: number]> = {
  0: [4, 1], // F32
  1: [2, 1], // F16
  2: [18, 32], // Q4_0
  3: [20, 32], // Q4_1
  6: [22, 32], // Q5_0
  7: [24, 32], // Q5_1
  8: [34, 32], // Q8_0
  9: [36, 32], // Q8_1
  10: [84, 256], // Q2_K
  11: [110, 256], // Q3_K
  12: [144, 256], // Q4_K
  13: [176, 256], // Q5_K
  14: [210, 256], // Q6_K
  15: [292, 256], // Q8_K
  16: [66, 256], // IQ2_XXS
  17: [74, 256], // IQ2_XS
  18: [98, 256], // IQ3_XXS
  19: [50, 256], // IQ1_S
  20: [18, 32], // IQ4_NL
  21: [110, 256], // IQ3_S
  22: [82, 256], // IQ2_S
  23: [136, 256], // IQ4_XS
  24: [1, 1], // I8
  25: [2, 1], // I16
  26: [4, 1], // I32
  27: [8, 1], // I64
  28: [8, 1], // F64
  29: [56, 256], // IQ1_M
  30: [2, 1], // BF16
  34: [54, 256], // TQ1_0
  35: [66, 256], // TQ2_0
  39: [17, 32], // MXFP4
  40: [36, 64], // NVFP4
  41: [18, 128], // Q1_0
  42: [18, 64], // Q2_0
};

class Reader {
  pos = 0;
  constructor(readonly b: Buffer) {}
  /** Moves past `n` bytes and returns where they start. */
  take(n: number): number {
    this.pos += n;
    return this.pos - n;
  }
  u8 = () => this.b.readUInt8(this.take(1));
  u32 = () => this.b.readUInt32LE(this.take(4));
  i32 = () => this.b.readInt32LE(this.take(4));
  f32 = () => this.b.readFloatLE(this.take(4));
  u64 = () => Number(this.b.readBigUInt64LE(this.take(8)));
  bytes = (n: number) => this.b.subarray(this.take(n), this.pos);
  str = () => this.bytes(this.u64());
}

type Value = number | boolean | Buffer | Value[];

function readValue(r: Reader, type: number): Value {
  switch (type) {
    case 0:
      return r.u8();
    case 1:
      return r.b.readInt8(r.take(1));
    case 2:
      return r.b.readUInt16LE(r.take(2));
    case 3:
      return r.b.readInt16LE(r.take(2));
    case 4:
      return r.u32();
    case 5:
      return r.i32();
    case 6:
      return r.f32();
    case 7:
      return r.u8() !== 0;
    case 8:
      return r.str();
    case 9: {
      const t = r.u32();
      const n = r.u64();
      return Array.from({ length: n }, () => readValue(r, t));
    }
    case 10:
      return r.u64();
    case 11:
      return Number(r.b.readBigInt64LE(r.take(8)));
    case 12:
      return r.b.readDoubleLE(r.take(8));
    default:
      throw new Error(`GGUF value type ${type} is unknown`);
  }
}

const u32le = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
const i32le = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
};
const u64le = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

/** A file B.1 and B.2 do not apply to (PDD-FP-004): another model format, B.3. */
export class NotGgufV2V3 extends Error {}

/**
 * Appendix B.1 and B.2 fingerprints of a GGUF file, and its vocabulary size
 * (B.4). Throws NotGgufV2V3 for anything but a little-endian GGUF v2 or v3.
 */
export function ggufFingerprints(path: string): {
  model: Buffer;
  tokenizer: Buffer;
  vocabSize: number;
  /** The token texts (raw bytes), the tokenizer model and tokenizer.ggml.add_space_prefix (Appendix C). */
  vocabulary: { tokens: Buffer[]; tokenizerModel: string | undefined; addSpacePrefix: boolean };
} {
  const file = readFileSync(path);
  const r = new Reader(file);
  if (file.length < 8 || r.bytes(4).toString("latin1") !== "GGUF") throw new NotGgufV2V3(`${path} is not a GGUF file`);
  const version = r.u32(); // a big-endian file reads as 0x02000000 or 0x03000000
  if (version !== 2 && version !== 3)
    throw new NotGgufV2V3(`${path} is GGUF version ${version}, not 2 or 3 (PDD-FP-004)`);
  const tensorCount = r.u64();
  const kvCount = r.u64();
  const kv = new Map<string, Value>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.str().toString("utf8");
    kv.set(key, readValue(r, r.u32()));
  }
  const tensors = Array.from({ length: tensorCount }, () => {
    const name = r.str();
    const dims = Array.from({ length: r.u32() }, () => r.u64());
    return { name, dims, type: r.u32(), offset: r.u64() };
  });
  const align = Number(kv.get("general.alignment") ?? 32);
  const dataStart = Math.ceil(r.pos / align) * align;

  const t = createHash("sha256").update("pdd.v1/tokenizer\n");
  t.update(Buffer.concat([(kv.get("tokenizer.ggml.model") as Buffer | undefined) ?? Buffer.alloc(0), Buffer.of(0)]));
  const tokens = (kv.get("tokenizer.ggml.tokens") as Buffer[] | undefined) ?? [];
  const scores = kv.get("tokenizer.ggml.scores") as number[] | undefined;
  const types = kv.get("tokenizer.ggml.token_type") as number[] | undefined;
  t.update(u32le(tokens.length));
  tokens.forEach((tok, i) => {
    const score = Buffer.alloc(4);
    score.writeFloatLE(scores?.[i] ?? 0);
    t.update(Buffer.concat([u32le(tok.length), tok, score, i32le(types?.[i] ?? 0)]));
  });
  const merges = (kv.get("tokenizer.ggml.merges") as Buffer[] | undefined) ?? [];
  t.update(u32le(merges.length));
  for (const m of merges) t.update(Buffer.concat([u32le(m.length), m]));
  const id = (k: string) => u32le(kv.has(k) ? Number(kv.get(k)) : 0xffffffff);
  t.update(
    Buffer.concat([
      id("tokenizer.ggml.bos_token_id"),
      id("tokenizer.ggml.eos_token_id"),
      id("tokenizer.ggml.padding_token_id"),
    ]),
  );
  // The default follows the tokenizer model, not general.architecture (B.2 step 5).
  const tokenizerModel = (kv.get("tokenizer.ggml.model") as Buffer | undefined)?.toString("latin1");
  const addBos = kv.has("tokenizer.ggml.add_bos_token")
    ? kv.get("tokenizer.ggml.add_bos_token") === true
    : tokenizerModel === "llama";
  t.update(Buffer.of(addBos ? 1 : 0));
  const tokenizer = t.digest();

  const vocabSize = tokens.length;
  const vocabulary = { tokens, tokenizerModel, addSpacePrefix: kv.get("tokenizer.ggml.add_space_prefix") !== false };
  if (!tensors.every((x) => GGML_TYPES[x.type])) {
    // A type outside Table B-1: the whole file, under its own domain string (PDD-FP-005).
    return {
      model: createHash("sha256").update("pdd.v1/model-file\n").update(file).digest(),
      tokenizer,
      vocabSize,
      vocabulary,
    };
  }
  const m = createHash("sha256").update("pdd.v1/model\n").update(tokenizer);
  for (const x of tensors) {
    const traits = GGML_TYPES[x.type]!;
    const elements = x.dims.reduce((a, d) => a * d, 1);
    const size = (elements / traits[1]) * traits[0];
    m.update(Buffer.concat([x.name, Buffer.of(0), u32le(x.type), u64le(x.dims.length), ...x.dims.map(u64le)]));
    m.update(r.b.subarray(dataStart + x.offset, dataStart + x.offset + size));
  }
  return { model: m.digest(), tokenizer, vocabSize, vocabulary };
}
