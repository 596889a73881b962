/**
 * What the device cases share: the prompt (long enough that the device is
 * still prefilling when the cloud's Accepted comes, so it waits for the KV
 * image), the greedy answer the device must show whatever the cloud does,
 * and a real KV image of that prompt exported by the engine.
 */
import { Engine, ensureDefaultModel } from "../../engine/index.js";
import { greedy } from "../../engine/test/greedy.js";
import { PROMPT } from "../harness/normal-device.js";

/**
 * The device runs the "small" preset (4 layers, 128 wide), not the tiny one:
 * its prefill of the prompt takes long enough that the cloud's Accepted
 * reaches it first on every binding (with the tiny model a gRPC or
 * WebTransport Accepted often came after the device had finished alone, and
 * the KV image was never waited for).
 */
export const DEVICE_MODEL = (): string => ensureDefaultModel("small");

export interface DeviceCase {
  engine: Engine;
  modelPath: string;
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
    const modelPath = DEVICE_MODEL();
    // 4 sequences, as the device: the image carries the stream count (spec §7.2).
    const engine = await Engine.load({ modelPath, threads: 1, sequences: 4 });
    let prompt = PROMPT;
    while (engine.tokenize(prompt).length < 3_000) prompt += ` ${PROMPT}`;
    const promptTokens = engine.tokenize(prompt);
    const maxTokens = 24;
    const answer = await greedy(engine, promptTokens, maxTokens);
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
    return { engine, modelPath, prompt, promptTokens, answer, text, maxTokens, budget: 8, image };
  })();
  return shared;
}

export const tokenOf = (c: DeviceCase, i: number) => ({ id: c.answer[i]!, piece: c.engine.pieces[c.answer[i]!]! });

/** Frees the case's engine (afterAll of each device file). */
export async function closeDeviceCase(): Promise<void> {
  const c = shared;
  shared = undefined;
  await (await c)?.engine.close();
}
