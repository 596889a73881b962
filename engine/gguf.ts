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
}

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
    // Header sections are small; read in growing windows.
    let buf = Buffer.alloc(1 << 20);
    let have = readSync(fd, buf, 0, buf.length, 0);
    let pos = 0;
    const need = (n: number) => {
      while (pos + n > have) {
        if (have < buf.length) throw badModel(path, "file ends inside the header");
        const bigger = Buffer.alloc(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        have += readSync(fd, bigger, have, bigger.length - have, have);
        buf = bigger;
        if (buf.length > 1 << 30) throw badModel(path, "header larger than 1 GiB");
      }
    };
    /** Makes sure `n` more bytes are read in, moves past them and returns where they start. */
    const take = (n: number) => {
      need(n);
      pos += n;
      return pos - n;
    };
    const u32 = () => buf.readUInt32LE(take(4));
    const u64 = () => buf.readBigUInt64LE(take(8));
    const str = () => {
      const n = Number(u64());
      if (n > 1 << 24) throw badModel(path, "string longer than 16 MiB in header");
      need(n);
      pos += n;
      return buf.toString("utf8", pos - n, pos);
    };
    const value = (t: number): GgufValue => {
      switch (t) {
        case GgufType.STRING:
          return str();
        case GgufType.ARRAY: {
          const et = u32();
          const n = Number(u64());
          if (n > 1 << 26) throw badModel(path, "array too long in header");
          const out: GgufValue[] = new Array(n);
          for (let i = 0; i < n; i++) out[i] = value(et);
          return out;
        }
        case GgufType.BOOL:
          need(1);
          return buf[pos++] !== 0;
        case GgufType.UINT64:
          return u64();
        case GgufType.INT64:
          need(8);
          pos += 8;
          return buf.readBigInt64LE(pos - 8);
        default: {
          const size = TYPE_SIZE[t];
          if (size === undefined) throw badModel(path, `unknown metadata type ${t}`);
          need(size);
          pos += size;
          const o = pos - size;
          switch (t) {
            case GgufType.UINT8:
              return buf.readUInt8(o);
            case GgufType.INT8:
              return buf.readInt8(o);
            case GgufType.UINT16:
              return buf.readUInt16LE(o);
            case GgufType.INT16:
              return buf.readInt16LE(o);
            case GgufType.UINT32:
              return buf.readUInt32LE(o);
            case GgufType.INT32:
              return buf.readInt32LE(o);
            case GgufType.FLOAT32:
              return buf.readFloatLE(o);
            default:
              return buf.readDoubleLE(o);
          }
        }
      }
    };
    if (have < 24 || buf.readUInt32LE(0) !== GGUF_MAGIC) throw badModel(path, "missing GGUF magic");
    pos = 4;
    const version = u32();
    if (version < 2 || version > 3) throw badModel(path, `unsupported GGUF version ${version}`);
    const tensorCount = Number(u64());
    const kvCount = Number(u64());
    if (tensorCount > 1 << 20 || kvCount > 1 << 20) throw badModel(path, "implausible tensor or metadata count");
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = str();
      metadata.set(key, value(u32()));
    }
    const tensors: TensorInfo[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = str();
      const nd = u32();
      if (nd > 8) throw badModel(path, `tensor ${name} has ${nd} dimensions`);
      const dims: bigint[] = [];
      for (let d = 0; d < nd; d++) dims.push(u64());
      tensors.push({ name, dims, type: u32(), offset: u64() });
    }
    const alignment = Number(metadata.get("general.alignment") ?? 32);
    const dataOffset = Math.ceil(pos / alignment) * alignment;
    return { version, metadata, tensors, dataOffset, alignment };
  } finally {
    closeSync(fd);
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
