/**
 * The seeded PRNG every layer shares (mulberry32): the network emulator's
 * jitter, the trace simulation, the fuzzers' case generation and the test
 * model's weights. A seed gives the same sequence on every platform.
 */

/** Uniform numbers in [0, 1); the same seed gives the same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
