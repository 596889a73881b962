/**
 * Checks a llama.cpp sequence-state image (KV_FORMAT_LLAMA_SEQ_STATE) before
 * llama.cpp sees it. The loader trusts its header: it allocates for the
 * declared cell count before reading a cell (10^7 cells cost +200 MiB, 2^31−1
 * tens of GB), loads 0 tokens beside thousands of cells and positions past the
 * context, and the next evaluation then fails (issue 13 item 4). This walks
 * the header without allocating and refuses anything the model could not have
 * written. Layout (llama.cpp v0.4.0 `state_seq_save_file`, `state_write`):
 *
 *   Magic u32 = "ggsq" | Version u32 = 3 | Token Count u32 | Tokens i32 × n
 *   Stream Count u32 | Stream × n
 *   Stream { Cell Count u32 | [Cell × n | V Trans u32 | Layer Count u32 | K Layer × l | V Layer × l] }
 *   Cell { Pos i32 | Seq Id Count u32 | Seq Id i32 × m }
 *   K Layer / V Layer (V Trans 0) { Type i32 | Row Size u64 | Row Size × Cell Count bytes }
 *   V Layer (V Trans 1) { Type i32 | Element Size u32 | Embd u32 | Element Size × Cell Count × Embd bytes }
 *
 * (conformance/kv-seq-state.ts is the suite's own reader and writer of the same
 * layout, kept apart so the tests do not share the device's code.)
 */
import { ErrorCode, PddError } from "../proto/index.js";

const MAGIC = 0x67677371;
const VERSION = 3;

export interface SeqStateLimits {
  /** Positions of the importing context: no token count, cell count or position may reach it. */
  contextSize: number;
  /** The model's layer count (0: not checked). */
  layers: number;
}

/** What a valid image holds: its tokens (= cells of its one sequence). */
export interface SeqStateSummary {
  tokens: number;
}

/** Throws KV_INTEGRITY naming the first field that a real image of this model could not hold. */
export function checkSeqState(image: Uint8Array, limits: SeqStateLimits): SeqStateSummary {
  const r = new HeaderReader(image);
  if (r.u32() !== MAGIC) throw bad("not a llama.cpp sequence state (magic)");
  const version = r.u32();
  if (version !== VERSION) throw bad(`sequence state version ${version}, not ${VERSION}`);
  const tokens = r.u32();
  if (tokens === 0) throw bad("the image holds no tokens");
  if (tokens > limits.contextSize) throw bad(`${tokens} tokens exceed the context of ${limits.contextSize}`);
  r.skip(tokens, 4);
  const streams = r.u32();
  if (streams === 0 || streams > 256) throw bad(`${streams} streams`);
  let cells = 0;
  for (let s = 0; s < streams; s++) cells += checkStream(r, limits);
  if (cells !== tokens) throw bad(`${tokens} tokens but ${cells} cells`);
  if (r.at !== image.length) throw bad(`${image.length - r.at} bytes after the last stream`);
  return { tokens };
}

function checkStream(r: HeaderReader, limits: SeqStateLimits): number {
  const cells = r.u32();
  if (cells === 0) return 0;
  if (cells > limits.contextSize) throw bad(`${cells} cells exceed the context of ${limits.contextSize}`);
  let previous = -1;
  for (let c = 0; c < cells; c++) {
    const pos = r.i32();
    if (pos <= previous || pos >= limits.contextSize)
      throw bad(`cell ${c} at position ${pos} (previous ${previous}, context ${limits.contextSize})`);
    previous = pos;
    const seqIds = r.u32();
    if (seqIds !== 1) throw bad(`cell ${c} belongs to ${seqIds} sequences, not 1`);
    r.skip(1, 4);
  }
  const vTrans = r.u32();
  const layers = r.u32();
  if (layers === 0 || (limits.layers > 0 && layers !== limits.layers))
    throw bad(`${layers} layers, the model has ${limits.layers}`);
  for (let l = 0; l < layers; l++) r.layerRows(cells); // K
  for (let l = 0; l < layers; l++)
    if (vTrans === 0) r.layerRows(cells);
    else r.transposedRows(cells);
  return cells;
}

const bad = (why: string) => new PddError(ErrorCode.KV_INTEGRITY, `KV image refused: ${why}`);

class HeaderReader {
  at = 0;
  private readonly view: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  private take(n: number): number {
    if (n > this.buf.length - this.at) throw bad(`the image ends at byte ${this.buf.length}, inside a field`);
    const at = this.at;
    this.at += n;
    return at;
  }
  u32 = () => this.view.getUint32(this.take(4), true);
  i32 = () => this.view.getInt32(this.take(4), true);
  u64 = () => this.view.getBigUint64(this.take(8), true);
  /** Skips `count` entries of `each` bytes; a count that cannot fit in what is left is refused before any use. */
  skip(count: number, each: number): void {
    this.take(count * each);
  }
  /** { Type i32, Row Size u64, rows } */
  layerRows(cells: number): void {
    this.i32();
    const rowSize = this.u64();
    if (rowSize === 0n || rowSize > BigInt(this.buf.length)) throw bad(`row size ${rowSize}`);
    this.skip(cells, Number(rowSize));
  }
  /** { Type i32, Element Size u32, Embd u32, elements } */
  transposedRows(cells: number): void {
    this.i32();
    const size = this.u32();
    const embd = this.u32();
    if (size === 0 || embd === 0) throw bad(`transposed V of ${size} × ${embd}`);
    this.skip(cells, size * embd);
  }
}

/**
 * Throws KV_INTEGRITY unless an image's token list is `want`: the device's own
 * prompt tokens and the cloud's answer tokens it covers (PDD-KV-013). An image
 * of another context loads and decodes, into another answer.
 */
export function sameTokens(have: ArrayLike<number>, want: readonly number[]): void {
  const same = have.length === want.length && want.every((t, i) => have[i] === t);
  if (!same)
    throw bad(
      `the image covers ${have.length} tokens that are not the ${want.length} of this prompt and answer (PDD-KV-013)`,
    );
}
