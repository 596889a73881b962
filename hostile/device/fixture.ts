/**
 * What the device cases share: the prompt (long enough that the device is
 * still prefilling when the cloud's Accepted comes, so it waits for the KV
 * image), the greedy answer the device must show whatever the cloud does,
 * and a real KV image of that prompt exported by the engine.
 */
import type { Engine } from "../../engine/index.js";
import { greedyAnswer, localEngine, longPrompt } from "../harness/normal-device.js";

export interface DeviceCase {
  engine: Engine;
  prompt: string;
  promptTokens: number[];
  /** The greedy answer, `maxTokens` long, as token IDs and as text. */
  answer: number[];
  text: string;
  maxTokens: number;
  budget: number;
  /** A real sequence-state image covering exactly the prompt. */
  image: Uint8Array;
}

let shared: Promise<DeviceCase> | undefined;

export function deviceCase(): Promise<DeviceCase> {
  shared ??= (async () => {
    const engine = await localEngine();
    const prompt = await longPrompt(3_000);
    const promptTokens = engine.tokenize(prompt);
    const maxTokens = 24;
    const answer = await greedyAnswer(prompt, maxTokens);
    const slot = await engine.acquire();
    let image: Uint8Array;
    try {
      // Prefill holds the last prompt token back; one decode step evaluates it, so the image covers the prompt.
      await slot.prefill(promptTokens);
      for await (const _ of slot.generate({}, 1)) break;
      image = await slot.exportState();
    } finally {
      await slot.release();
    }
    const text = Buffer.from(engine.bytes(answer)).toString("utf8");
    return { engine, prompt, promptTokens, answer, text, maxTokens, budget: 8, image };
  })();
  return shared;
}

export const tokenOf = (c: DeviceCase, i: number) => ({ id: c.answer[i]!, piece: c.engine.pieces[c.answer[i]!]! });
