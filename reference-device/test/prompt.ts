/**
 * A prompt of about `n` tokens of `engine`'s tokenizer that ends with a full
 * stop (the generated models' skeleton text starts after it).
 * @internal test support
 */
import type { InferenceEngine } from "../../engine/index.js";

export function promptOf(engine: Pick<InferenceEngine, "tokenize">, n: number): string {
  const words = "the cloud prefills the prompt fast while the device decodes the answer on its own".split(" ");
  const out: string[] = [];
  while (engine.tokenize(`${out.join(" ")}.`).length < n) out.push(words[out.length % words.length]!);
  return `${out.join(" ")}.`;
}
