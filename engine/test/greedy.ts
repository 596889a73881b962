/** Greedy decoding of `n` tokens after `prompt` on a sequence of its own. @internal test support */
import type { InferenceEngine } from "../inference.js";

export async function greedy(engine: InferenceEngine, prompt: readonly number[], n: number): Promise<number[]> {
  const slot = await engine.acquire();
  try {
    await slot.prefill(prompt);
    const out: number[] = [];
    for await (const t of slot.generate({}, n)) out.push(t);
    return out;
  } finally {
    await slot.release();
  }
}
