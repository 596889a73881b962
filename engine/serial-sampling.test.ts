import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, PRESETS } from "./index.js";
import { llamaRuntime } from "./engine.js";
import { oneAtATime, serializeSampling } from "./serial-sampling.js";

describe("oneAtATime", () => {
  it("starts a call only after the one before it settled, in call order, passing results and rejections through", async () => {
    const started: number[] = [];
    const finish: (() => void)[] = [];
    const fn = oneAtATime(async (n: number) => {
      started.push(n);
      await new Promise<void>((r) => finish.push(r));
      if (n === 2) throw new Error("two");
      return n * 10;
    });
    const calls = [fn(1), fn(2), fn(3)];
    await new Promise<void>((r) => setImmediate(r));
    expect(started).toEqual([1]);
    finish.shift()!();
    await expect(calls[0]).resolves.toBe(10);
    await new Promise<void>((r) => setImmediate(r));
    expect(started).toEqual([1, 2]);
    finish.shift()!();
    await expect(calls[1]).rejects.toThrow("two");
    await new Promise<void>((r) => setImmediate(r));
    finish.shift()!();
    await expect(calls[2]).resolves.toBe(30);
    expect(started).toEqual([1, 2, 3]);
  });
});

describe("a llama.cpp context with serialized sampling", () => {
  const dir = mkdtempSync(join(tmpdir(), "pdd-serial-"));
  const path = join(dir, "tiny.gguf");
  let model: LlamaModel;
  let context: LlamaContext;
  /** The most native samplings of the context in flight at once. */
  let peak = 0;

  beforeAll(async () => {
    createModel(path, PRESETS.tiny);
    model = await (await llamaRuntime()).loadModel({ modelPath: path });
    context = await model.createContext({ sequences: 4, contextSize: 256, threads: 1 });
    // Counts overlapping calls underneath the serialization, as llama.cpp sees them.
    const native = Reflect.get(context, "_ctx") as object;
    const sample = (Reflect.get(native, "sampleToken") as (...a: unknown[]) => Promise<unknown>).bind(native);
    let inFlight = 0;
    Object.defineProperty(native, "sampleToken", {
      configurable: true,
      value: async (...a: unknown[]) => {
        peak = Math.max(peak, ++inFlight);
        try {
          return await sample(...a);
        } finally {
          inFlight--;
        }
      },
    });
    serializeSampling(context);
  });
  afterAll(async () => {
    await context.dispose();
    await model.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  async function answer(seq: LlamaContextSequence, prompt: string): Promise<number[]> {
    await seq.clearHistory();
    const out: number[] = [];
    for await (const t of seq.evaluate(model.tokenize(prompt) as Token[], { temperature: 0 })) {
      out.push(t);
      if (out.length === 12) break;
    }
    return out;
  }

  it("samples one sequence at a time when a batch's outputs come back out of order, and each answer is its own", async () => {
    const seqs = [0, 1, 2, 3].map(() => context.getSequence());
    const prompts = ["One fox.", "Two owls, then three.", "The quick", "A lazy dog and"];
    const alone: number[][] = [];
    for (const [i, p] of prompts.entries()) alone.push(await answer(seqs[i]!, p));
    peak = 0;
    // Sequences 0, 2, 1, 3 in one batch: llama.cpp computes 0 and 1 first, so their outputs need reordering.
    const order = [0, 2, 1, 3];
    const together = await Promise.all(order.map((i) => answer(seqs[i]!, prompts[i]!)));
    expect(peak).toBe(1);
    expect(together).toEqual(order.map((i) => alone[i]));
  });
});
