/**
 * Hostile KV images: a real image of the device's model with one targeted
 * change each (issue 13 item 4). Header changes patch the real bytes in
 * place, so everything else stays exactly as llama.cpp wrote it; the
 * "more cells than the context" and "a cell in two sequences" images are
 * rebuilt whole, so they are consistent and only that one thing is wrong.
 */
import { parseSeqState, writeSeqState, type SeqLayer, type SeqState } from "./kv-seq-state.js";

export interface Mutation {
  name: string;
  /** What it should make a device do: "fallback" (recompute) in every case. */
  build(real: Uint8Array, contextSize: number): Uint8Array;
}

const u32At = (img: Uint8Array, at: number, v: number): Uint8Array => {
  const out = Buffer.from(img);
  out.writeUInt32LE(v >>> 0, at);
  return new Uint8Array(out);
};

function onlyStream(real: Uint8Array) {
  const p = parseSeqState(real);
  const i = p.state.streams.findIndex((s) => s.cells.length > 0);
  if (i < 0) throw new Error("the real image has no cells");
  return { ...p, i, o: p.offsets.streams[i]! };
}

export const MUTATIONS: Mutation[] = [
  {
    name: "token count 0 (tokens removed, the rest consistent)",
    build(real) {
      const { state } = parseSeqState(real);
      return writeSeqState({ ...state, tokens: [] });
    },
  },
  {
    name: "last position 2^31−1",
    build(real) {
      const { o } = onlyStream(real);
      return u32At(real, o.lastPos, 2 ** 31 - 1);
    },
  },
  {
    name: "positions not increasing (the last cell at position 0)",
    build(real) {
      const { state, i, o } = onlyStream(real);
      if (state.streams[i]!.cells.length < 2) throw new Error("the real image has one cell");
      return u32At(real, o.lastPos, 0);
    },
  },
  {
    name: "a cell in two sequences (the rest consistent)",
    build(real) {
      const { state, i } = onlyStream(real);
      const streams = state.streams.map((s, j) =>
        j !== i ? s : { ...s, cells: s.cells.map((c, n) => (n === 0 ? { ...c, seqIds: [...c.seqIds, 1] } : c)) },
      );
      return writeSeqState({ ...state, streams });
    },
  },
  {
    name: "cell count 2^31−1",
    build(real) {
      return u32At(real, onlyStream(real).o.cellCount, 2 ** 31 - 1);
    },
  },
  {
    name: "cell count 10^8",
    build(real) {
      return u32At(real, onlyStream(real).o.cellCount, 100_000_000);
    },
  },
  {
    name: "more cells than the context (consistent image)",
    build(real, contextSize) {
      const { state, i } = onlyStream(real);
      const n = contextSize + 1;
      const st = state.streams[i]!;
      const rows = (l: SeqLayer): SeqLayer => {
        const row = l.data.subarray(0, l.size);
        return { ...l, data: Buffer.concat(Array.from({ length: n }, () => row)) };
      };
      const big: SeqState = {
        tokens: Array.from({ length: n }, (_, t) => state.tokens[t % state.tokens.length]!),
        streams: state.streams.map((s, j) =>
          j !== i
            ? s
            : {
                cells: Array.from({ length: n }, (_, pos) => ({ pos, seqIds: st.cells[0]!.seqIds })),
                vTrans: st.vTrans,
                k: st.k!.map(rows),
                v: st.v!.map((l) => (st.vTrans ? { ...l, data: Buffer.alloc(l.size * n * (l.embd ?? 0)) } : rows(l))),
              },
        ),
      };
      return writeSeqState(big);
    },
  },
  {
    name: "wrong layer count",
    build(real) {
      const { state, o } = onlyStream(real);
      const layers = state.streams.find((s) => s.k)!.k!.length;
      return u32At(real, o.layerCount, layers + 1);
    },
  },
  {
    name: "wrong K row size",
    build(real) {
      const { o } = onlyStream(real);
      const out = Buffer.from(real);
      out.writeBigUInt64LE(out.readBigUInt64LE(o.firstKRowSize) * 2n, o.firstKRowSize);
      return new Uint8Array(out);
    },
  },
  {
    name: "truncated to half",
    build(real) {
      return real.subarray(0, Math.floor(real.length / 2));
    },
  },
];
