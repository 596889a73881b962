/**
 * A reader and writer for llama.cpp's sequence-state image: what
 * `llama_state_seq_save_file` writes and `llama_state_seq_load_file` reads,
 * which is what a KV_FORMAT_LLAMA_SEQ_STATE image is on the wire (node-llama-cpp
 * 3.21.1 saves and loads sequences through those two calls).
 *
 * Layout, read from the llama.cpp sources node-llama-cpp 3.21.1 ships
 * (node_modules/node-llama-cpp/llama/gitRelease.bundle, release v0.4.0:
 * src/llama-context.cpp `state_seq_save_file` / `state_seq_load_file`,
 * src/llama-kv-cache.cpp `state_write` / `state_read_sinfo` /
 * `state_read_meta` / `state_read_data`). Little-endian throughout.
 *
 *   SeqStateFile {
 *     Magic (u32) = 0x67677371 ("ggsq")        LLAMA_STATE_SEQ_MAGIC
 *     Version (u32) = 3                        LLAMA_STATE_SEQ_VERSION
 *     Token Count (u32)
 *     Tokens (i32) × Token Count               the sequence's tokens, as the saver passed them
 *     Stream Count (u32)                       n_stream: 1 with a unified KV cache, else n_seq_max
 *     Stream × Stream Count
 *   }
 *   Stream {
 *     Cell Count (u32)                         cells of this sequence in the stream; 0: nothing follows
 *     [Cell × Cell Count]
 *     [Data]                                   present iff Cell Count > 0
 *   }
 *   Cell {
 *     Pos (i32)
 *     Seq Id Count (u32)                       1 for a single sequence (the loader refuses anything else)
 *     [Cell Ext]                               only for M-RoPE or PLE models (has_cell_ext); not parsed here
 *     Seq Id (i32) × Seq Id Count              ignored by the loader: it uses its own sequence
 *   }
 *   Data {
 *     V Trans (u32)                            1 when V is stored transposed
 *     Layer Count (u32)                        must equal the model's
 *     K Layer × Layer Count                    { Type (i32), Row Size (u64), Rows (Row Size × Cell Count bytes) }
 *     V Layer × Layer Count                    V Trans 0: { Type (i32), Row Size (u64), Rows }
 *                                              V Trans 1: { Type (i32), Element Size (u32), Embd (u32),
 *                                                           Elements (Element Size × Cell Count × Embd bytes) }
 *   }
 *
 * What the loader checks, and what it does not (why a validating parser is
 * needed before it, issue 13 item 4):
 * - `Token Count` against the caller's capacity (node-llama-cpp passes the
 *   context size), not against the cells; 0 tokens with cells loads, and the
 *   next evaluation fails.
 * - `Cell Count` only after `state_read_meta` has called
 *   `ubatch_reserve(cell_count)`: several arrays of Cell Count entries are
 *   allocated before a byte of the cells is read (2^31−1 → gigabytes).
 * - `Pos` not at all: a cell at 2^31−1 loads, and decoding after it fails.
 * - `Layer Count`, types and row sizes: checked, and refused.
 * - A short file: the read throws, and the load fails.
 */

export const SEQ_STATE_MAGIC = 0x67677371;
export const SEQ_STATE_VERSION = 3;

export interface SeqCell {
  pos: number;
  seqIds: number[];
}

export interface SeqLayer {
  type: number;
  /** Row Size (V Trans 0, and every K layer) or Element Size (V Trans 1). */
  size: number;
  /** Embd, for a transposed V layer. */
  embd?: number;
  data: Uint8Array;
}

export interface SeqStream {
  cells: SeqCell[];
  vTrans?: number;
  k?: SeqLayer[];
  v?: SeqLayer[];
}

export interface SeqState {
  tokens: number[];
  streams: SeqStream[];
}

/** Byte offsets of the header fields an attack may change. */
export interface SeqStateOffsets {
  tokenCount: number;
  streamCount: number;
  /** Per stream: its Cell Count, its first cell's Pos, its Layer Count, its first K layer's Row Size (-1 when empty). */
  streams: { cellCount: number; firstPos: number; lastPos: number; layerCount: number; firstKRowSize: number }[];
}

export class SeqStateError extends Error {}

/** Parses an image; throws SeqStateError on anything that is not one (a short file, a wrong magic). */
export function parseSeqState(image: Uint8Array): { state: SeqState; offsets: SeqStateOffsets } {
  const r = new Reader(image);
  if (r.u32() !== SEQ_STATE_MAGIC) throw new SeqStateError("not a llama.cpp sequence state (magic)");
  const version = r.u32();
  if (version !== SEQ_STATE_VERSION) throw new SeqStateError(`sequence state version ${version}, not 3`);
  const tokenCountAt = r.at;
  const nTokens = r.u32();
  const tokens = Array.from({ length: r.need(nTokens, 4) }, () => r.i32());
  const streamCountAt = r.at;
  const nStreams = r.need(r.u32(), 4);
  const streams: SeqStream[] = [];
  const offsets: SeqStateOffsets = { tokenCount: tokenCountAt, streamCount: streamCountAt, streams: [] };
  for (let s = 0; s < nStreams; s++) {
    const o = { cellCount: r.at, firstPos: -1, lastPos: -1, layerCount: -1, firstKRowSize: -1 };
    offsets.streams.push(o);
    const nCells = r.u32();
    if (nCells === 0) {
      streams.push({ cells: [] });
      continue;
    }
    const cells: SeqCell[] = [];
    r.need(nCells, 12);
    for (let c = 0; c < nCells; c++) {
      if (c === 0) o.firstPos = r.at;
      o.lastPos = r.at;
      const pos = r.i32();
      const n = r.u32();
      cells.push({ pos, seqIds: Array.from({ length: r.need(n, 4) }, () => r.i32()) });
    }
    const vTrans = r.u32();
    o.layerCount = r.at;
    const nLayers = r.need(r.u32(), 12);
    const k: SeqLayer[] = [];
    for (let l = 0; l < nLayers; l++) {
      const type = r.i32();
      if (l === 0) o.firstKRowSize = r.at;
      const size = Number(r.u64());
      k.push({ type, size, data: r.bytes(size * nCells) });
    }
    const v: SeqLayer[] = [];
    for (let l = 0; l < nLayers; l++) {
      const type = r.i32();
      if (vTrans === 0) {
        const size = Number(r.u64());
        v.push({ type, size, data: r.bytes(size * nCells) });
      } else {
        const size = r.u32();
        const embd = r.u32();
        v.push({ type, size, embd, data: r.bytes(size * nCells * embd) });
      }
    }
    streams.push({ cells, vTrans, k, v });
  }
  if (r.at !== image.length) throw new SeqStateError(`${image.length - r.at} bytes after the last stream`);
  return { state: { tokens, streams }, offsets };
}

/** Writes an image from its parts (for consistent images of any shape, e.g. more cells than the context). */
export function writeSeqState(s: SeqState): Uint8Array {
  const w = new Writer();
  w.u32(SEQ_STATE_MAGIC).u32(SEQ_STATE_VERSION).u32(s.tokens.length);
  for (const t of s.tokens) w.i32(t);
  w.u32(s.streams.length);
  for (const st of s.streams) {
    w.u32(st.cells.length);
    if (st.cells.length === 0) continue;
    for (const c of st.cells) {
      w.i32(c.pos).u32(c.seqIds.length);
      for (const id of c.seqIds) w.i32(id);
    }
    w.u32(st.vTrans ?? 0).u32(st.k?.length ?? 0);
    for (const l of st.k ?? []) w.i32(l.type).u64(l.size).raw(l.data);
    for (const l of st.v ?? []) {
      w.i32(l.type);
      if ((st.vTrans ?? 0) === 0) w.u64(l.size);
      else w.u32(l.size).u32(l.embd ?? 0);
      w.raw(l.data);
    }
  }
  return w.done();
}

class Reader {
  at = 0;
  private readonly view: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  /** Refuses a count whose entries (at least `each` bytes) cannot fit in what is left: no allocation on a lie. */
  need(count: number, each: number): number {
    if (count * each > this.buf.length - this.at)
      throw new SeqStateError(
        `${count} entries at byte ${this.at} cannot fit in the ${this.buf.length - this.at} bytes left`,
      );
    return count;
  }
  private take(n: number): number {
    if (this.at + n > this.buf.length)
      throw new SeqStateError(`the image ends at byte ${this.buf.length}, inside a field`);
    const at = this.at;
    this.at += n;
    return at;
  }
  u32 = () => this.view.getUint32(this.take(4), true);
  i32 = () => this.view.getInt32(this.take(4), true);
  u64 = () => this.view.getBigUint64(this.take(8), true);
  bytes = (n: number) => this.buf.subarray(this.take(n), this.at);
}

class Writer {
  private parts: Buffer[] = [];
  private put(size: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    write(b);
    this.parts.push(b);
    return this;
  }
  u32 = (n: number) => this.put(4, (b) => b.writeUInt32LE(n >>> 0));
  i32 = (n: number) => this.put(4, (b) => b.writeInt32LE(n | 0));
  u64 = (n: number) => this.put(8, (b) => b.writeBigUInt64LE(BigInt(n)));
  raw(d: Uint8Array): this {
    this.parts.push(Buffer.from(d));
    return this;
  }
  done = () => new Uint8Array(Buffer.concat(this.parts));
}
