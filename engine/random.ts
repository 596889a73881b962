/** Seeded normal variates (Box–Muller over the shared PRNG) for model weights. @internal */
import { prng } from "../shared/index.js";

export function prngNormal(seed: number): () => number {
  const next = prng(seed);
  // Shifted by half a step, (x + 0.5) / 2^32, so that log() never sees 0; exact in binary64.
  const uniform = () => next() + 2 ** -33;
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const th = 2 * Math.PI * uniform();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}
