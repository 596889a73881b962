/**
 * A minimal GGUF (v3) reader and writer: enough to generate test models and
 * to fingerprint any model file by content (spec Appendix B). The reader
 * parses only the header, metadata and tensor-info table; tensor data is
 * streamed by the fingerprinter.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { ErrorCode, PddError } from "../proto/index.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface TensorInfo {
  name: string;
  /** The name's bytes as stored (Appendix B hashes them, never a re-encoding). */
  nameBytes: Buffer;
  dims: bigint[];
  type: number;
  /** Offset of the tensor's data, relative to the start of the data section. */
  offset: bigint;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: TensorInfo[];
  /** Absolute file offset where tensor data starts. */
  dataOffset: number;
  alignment: number;
  /** The stored bytes of the string values Appendix B hashes (RAW_STRING_KEYS): one Buffer per string. */
  rawStrings: Map<string, Buffer[]>;
}

/** Metadata whose strings the fingerprints hash as stored: decoding and re-encoding would change invalid UTF-8 (Appendix B.0). */
const RAW_STRING_KEYS = new Set(["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"]);

const TYPE_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function badModel(path: string, why: string): PddError {
  return new PddError(ErrorCode.INVALID_ARGUMENT, `${path} is not a usable GGUF model: ${why}`, {
    local: "ERR_INTERNAL",
  });
}

/** Reads the header of a GGUF file. Throws INVALID_ARGUMENT for anything that is not GGUF v2/v3. */
export function readGgufHeader(path: string): GgufHeader {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new PddError(ErrorCode.INVALID_ARGUMENT, `cannot open model file ${path}: ${(e as Error).message}`);
  }
  try {
    const r = new HeaderReader(fd, path);
    if (r.have < 24 || r.u32() !== GGUF_MAGIC) throw badModel(path, "missing GGUF magic");
    const version = r.u32();
    if (version < 2 || version > 3) throw badModel(path, `unsupported GGUF version ${version}`);
    const tensorCount = Number(r.u64());
    const kvCount = Number(r.u64());
    if (tensorCount > 1 << 20 || kvCount > 1 << 20) throw badModel(path, "implausible tensor or metadata count");
    const metadata = new Map<string, GgufValue>();
    const rawStrings = new Map<string, Buffer[]>();
    for (let i = 0; i < kvCount; i++) {
      const key = r.str();
      r.raw = RAW_STRING_KEYS.has(key) ? [] : undefined;
      metadata.set(key, r.value(r.u32()));
      if (r.raw) rawStrings.set(key, r.raw);
      r.raw = undefined;
    }
    const tensors: TensorInfo[] = [];
    for (let i = 0; i < tensorCount; i++) tensors.push(r.tensorInfo());
    const alignment = Number(metadata.get("general.alignment") ?? 32);
    const dataOffset = Math.ceil(r.pos / alignment) * alignment;
    return { version, metadata, tensors, dataOffset, alignment, rawStrings };
  } catch (e) {
    // A directory opens on Linux and fails on the first read (EISDIR): one line naming the file, not a trace.
    if (e instanceof PddError) throw e;
    throw badModel(path, (e as Error).message);
  } finally {
    closeSync(fd);
  }
}

/** Fixed-size metadata types: how to read one at an offset. */
const SCALAR_READERS: Record<number, (b: Buffer, o: number) => GgufValue> = {
  [GgufType.UINT8]: (b, o) => b.readUInt8(o),
  [GgufType.INT8]: (b, o) => b.readInt8(o),
  [GgufType.UINT16]: (b, o) => b.readUInt16LE(o),
  [GgufType.INT16]: (b, o) => b.readInt16LE(o),
  [GgufType.UINT32]: (b, o) => b.readUInt32LE(o),
  [GgufType.INT32]: (b, o) => b.readInt32LE(o),
  [GgufType.FLOAT32]: (b, o) => b.readFloatLE(o),
  [GgufType.BOOL]: (b, o) => b[o] !== 0,
  [GgufType.UINT64]: (b, o) => b.readBigUInt64LE(o),
  [GgufType.INT64]: (b, o) => b.readBigInt64LE(o),
  [GgufType.FLOAT64]: (b, o) => b.readDoubleLE(o),
};

/** Reads a GGUF header front to back; header sections are small, so the file is read in growing windows. */
class HeaderReader {
  buf = Buffer.alloc(1 << 20);
  have: number;
  pos = 0;
  /** When set, every string read is also kept here as its stored bytes. */
  raw: Buffer[] | undefined;
  constructor(
    private readonly fd: number,
    private readonly path: string,
  ) {
    this.have = readSync(fd, this.buf, 0, this.buf.length, 0);
  }

  /** Makes sure `n` more bytes are read in, moves past them and returns where they start. */
  take(n: number): number {
    while (this.pos + n > this.have) {
      if (this.have < this.buf.length) throw badModel(this.path, "file ends inside the header");
      const bigger = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.have);
      this.have += readSync(this.fd, bigger, this.have, bigger.length - this.have, this.have);
      this.buf = bigger;
      if (this.buf.length > 1 << 30) throw badModel(this.path, "header larger than 1 GiB");
    }
    this.pos += n;
    return this.pos - n;
  }

  u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }

  u64(): bigint {
    return this.buf.readBigUInt64LE(this.take(8));
  }

  str(): string {
    const b = this.strBytes();
    this.raw?.push(Buffer.from(b));
    return b.toString("utf8");
  }

  strBytes(): Buffer {
    const n = Number(this.u64());
    if (n > 1 << 24) throw badModel(this.path, "string longer than 16 MiB in header");
    const o = this.take(n);
    return this.buf.subarray(o, o + n);
  }

  value(t: number): GgufValue {
    if (t === GgufType.STRING) return this.str();
    if (t === GgufType.ARRAY) {
      const et = this.u32();
      const n = Number(this.u64());
      if (n > 1 << 26) throw badModel(this.path, "array too long in header");
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = this.value(et);
      return out;
    }
    const size = TYPE_SIZE[t];
    const read = SCALAR_READERS[t];
    if (size === undefined || read === undefined) throw badModel(this.path, `unknown metadata type ${t}`);
    return read(this.buf, this.take(size));
  }

  tensorInfo(): TensorInfo {
    const nameBytes = Buffer.from(this.strBytes());
    const name = nameBytes.toString("utf8");
    const nd = this.u32();
    if (nd > 8) throw badModel(this.path, `tensor ${name} has ${nd} dimensions`);
    const dims: bigint[] = [];
    for (let d = 0; d < nd; d++) dims.push(this.u64());
    return { name, nameBytes, dims, type: this.u32(), offset: this.u64() };
  }
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

export type MetaEntry = [key: string, type: GgufType, value: GgufValue, elementType?: GgufType];

export interface TensorSpec {
  name: string;
  /** ggml order: ne[0] is the contiguous dimension. */
  dims: number[];
  /** 0 = F32, 1 = F16 */
  type: 0 | 1;
  /** Produces the tensor's values in ggml order. */
  fill(out: Float32Array): void;
}

function writeValue(parts: Buffer[], type: GgufType, v: GgufValue, elementType?: GgufType): void {
  const b = (n: number) => Buffer.alloc(n);
  switch (type) {
    case GgufType.STRING: {
      const s = Buffer.from(v as string, "utf8");
      const h = b(8);
      h.writeBigUInt64LE(BigInt(s.length));
      parts.push(h, s);
      return;
    }
    case GgufType.ARRAY: {
      const arr = v as GgufValue[];
      const h = b(12);
      h.writeUInt32LE(elementType!, 0);
      h.writeBigUInt64LE(BigInt(arr.length), 4);
      parts.push(h);
      for (const x of arr) writeValue(parts, elementType!, x);
      return;
    }
    case GgufType.UINT32: {
      const x = b(4);
      x.writeUInt32LE(v as number);
      parts.push(x);
      return;
    }
    case GgufType.INT32: {
      const x = b(4);
      x.writeInt32LE(v as number);
      parts.push(x);
      return;
    }
    case GgufType.FLOAT32: {
      const x = b(4);
      x.writeFloatLE(v as number);
      parts.push(x);
      return;
    }
    case GgufType.BOOL:
      parts.push(Buffer.from([v ? 1 : 0]));
      return;
    default:
      throw new Error(`writer does not support GGUF type ${type}`);
  }
}

const f32 = new Float32Array(1);
const u32v = new Uint32Array(f32.buffer);
/** IEEE 754 half from a float, round to nearest even. */
export function toHalf(v: number): number {
  f32[0] = v;
  const x = u32v[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant = (mant | 0x800000) >> (1 - exp);
    return sign | ((mant + 0x1000) >> 13);
  }
  const h = sign | (exp << 10) | (mant >> 13);
  return mant & 0x1000 ? h + 1 : h;
}

/**
 * Writes a GGUF v3 file: header, metadata, tensor infos, aligned data.
 * `write` receives the file in order, piece by piece.
 */
export function writeGguf(
  write: (chunk: Buffer) => void,
  meta: MetaEntry[],
  tensors: TensorSpec[],
  onTensor?: (i: number) => void,
): void {
  const alignment = 32;
  const head: Buffer[] = [];
  const h = Buffer.alloc(24);
  h.writeUInt32LE(GGUF_MAGIC, 0);
  h.writeUInt32LE(3, 4);
  h.writeBigUInt64LE(BigInt(tensors.length), 8);
  h.writeBigUInt64LE(BigInt(meta.length), 16);
  head.push(h);
  for (const [key, type, value, et] of meta) {
    writeValue(head, GgufType.STRING, key);
    const t = Buffer.alloc(4);
    t.writeUInt32LE(type);
    head.push(t);
    writeValue(head, type, value, et);
  }
  let offset = 0n;
  const sizes: number[] = [];
  for (const t of tensors) {
    writeValue(head, GgufType.STRING, t.name);
    const info = Buffer.alloc(4 + 8 * t.dims.length + 4 + 8);
    info.writeUInt32LE(t.dims.length, 0);
    t.dims.forEach((d, i) => {
      info.writeBigUInt64LE(BigInt(d), 4 + 8 * i);
    });
    info.writeUInt32LE(t.type, 4 + 8 * t.dims.length);
    info.writeBigUInt64LE(offset, 8 + 8 * t.dims.length);
    head.push(info);
    const size = t.dims.reduce((a, b) => a * b, 1) * (t.type === 0 ? 4 : 2);
    sizes.push(size);
    offset += BigInt(Math.ceil(size / alignment) * alignment);
  }
  let headLen = head.reduce((a, b) => a + b.length, 0);
  for (const p of head) write(p);
  const pad = (n: number) => {
    const r = (alignment - (n % alignment)) % alignment;
    if (r) write(Buffer.alloc(r));
    return r;
  };
  headLen += pad(headLen);
  tensors.forEach((t, i) => {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    t.fill(values);
    if (t.type === 0) write(Buffer.from(values.buffer, values.byteOffset, values.byteLength));
    else {
      const half = new Uint16Array(n);
      for (let j = 0; j < n; j++) half[j] = toHalf(values[j]!);
      write(Buffer.from(half.buffer));
    }
    pad(sizes[i]!);
    onTensor?.(i);
  });
}
