/**
 * Batched decoding on the cloud: a GPU serving many sequences decodes each of
 * them more slowly as the batch grows (every step reads the weights once for
 * all, then attention and the prefill chunks mixed into the batch add work).
 * The trace simulation and the live replay charge a cloud sequence
 * step(b) = step(1) × slowdown(b), with b the sequences decoding beside it.
 *
 * The slowdown is measured, not assumed: vLLM 0.21.0 serving
 * Llama-3.1-8B-Instruct (fp16) on one H100-80GB-HBM3, median time per output
 * token at a client concurrency of 1, 4, 16 and 64: 6.48, 6.59, 10.94 and
 * 46.91 ms (InferenceBench concurrency-sweep recipe, 2026-05-16,
 * yobitelcomm.github.io/bench/recipes/concurrency-sweep/). Between the
 * measured points it is interpolated linearly; past 64 it grows in proportion
 * to b (the engine is saturated: more sequences share the same throughput).
 * Applied to CLOUD_GPU's single-stream rate, this assumes the RTX 4090 under
 * llama.cpp slows by the same factor as the H100 under vLLM: an assumption,
 * stated where the numbers are printed.
 */
export interface BatchingModel {
  name: string;
  source: string;
  /** [batch size, per-sequence step time relative to a batch of 1], ascending. */
  points: [number, number][];
}

export const VLLM_H100_8B: BatchingModel = {
  name: "vLLM 0.21, Llama-3.1-8B fp16, one H100 (measured TPOT p50 by concurrency)",
  source:
    "InferenceBench concurrency-sweep recipe (yobitelcomm.github.io/bench/recipes/concurrency-sweep/, 2026-05-16)",
  points: [
    [1, 1],
    [4, 6.59 / 6.48],
    [16, 10.94 / 6.48],
    [64, 46.91 / 6.48],
  ],
};

/** No batching effect: every sequence decodes at the single-stream rate (the simulation before issue 18). */
export const NO_BATCHING: BatchingModel = {
  name: "none (single-stream rate at any batch)",
  source: "—",
  points: [[1, 1]],
};

/** Per-sequence step time at batch size `b`, relative to a batch of one. */
export function slowdown(m: BatchingModel, b: number): number {
  const p = m.points;
  if (b <= p[0]![0] || p.length === 1) return p[0]![1];
  for (let i = 1; i < p.length; i++) {
    const [b1, s1] = p[i]!;
    if (b <= b1) {
      const [b0, s0] = p[i - 1]!;
      return s0 + ((s1 - s0) * (b - b0)) / (b1 - b0);
    }
  }
  const [bn, sn] = p[p.length - 1]!;
  return (sn * b) / bn;
}
