/**
 * Refinement on the llama-server engine: a local scoring model with the
 * served model's tokenizer gives the prompt's surprisal (llama-server gives
 * none); one with another tokenizer is refused; without one, no refinement.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import type { LlamaModel } from "node-llama-cpp";
import { Engine, llamaRuntime } from "./engine.js";
import { createModel, LlamaServerEngine, PRESETS } from "./index.js";
import { FakeLlamaServer, fakeModel } from "./test/fake-llama-server.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-scorer-"));
const paths = { tiny: join(dir, "tiny.gguf"), small: join(dir, "small.gguf"), tinyB: join(dir, "tiny-b.gguf") };
let fake: FakeLlamaServer;
let vocab: LlamaModel;

beforeAll(async () => {
  createModel(paths.tiny, PRESETS.tiny);
  createModel(paths.small, PRESETS.small);
  createModel(paths.tinyB, PRESETS["tiny-b"]);
  // The backend serves `small`; the cloud scores with `tiny`, a smaller model with the same vocabulary.
  vocab = await (await llamaRuntime()).loadModel({ modelPath: paths.small, vocabOnly: true });
  fake = await FakeLlamaServer.start({
    model: fakeModel(paths.small, (text) => vocab.tokenize(text, false) as number[]),
  });
});
afterAll(async () => {
  await fake?.close();
  await vocab?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function surprisalOf(engine: Engine | LlamaServerEngine, tokens: number[]): Promise<Float64Array | undefined> {
  const slot = await engine.acquire();
  try {
    return (await slot.prefill(tokens, { surprisal: true })).surprisal;
  } finally {
    await slot.release();
  }
}

describe("llama-server engine: refinement through a local scoring model", () => {
  it("scores the prompt with the local model: the surprisal node-llama-cpp gives on that model", async () => {
    const e = await LlamaServerEngine.connect({ backends: [fake.url], refineModel: paths.tiny });
    const tiny = await Engine.load({ modelPath: paths.tiny, sequences: 1, threads: 1 });
    try {
      expect(e.scoresPrompts).toBe(true);
      const prompt = e.tokenize("The quick brown fox jumps over the lazy dog and the owls smile.");
      const got = await surprisalOf(e, prompt);
      expect(got).toBeDefined();
      expect(Array.from(got!).slice(1)).toEqual(Array.from((await surprisalOf(tiny, prompt))!).slice(1));
      expect(got!.slice(1).every((x) => Number.isFinite(x) && x >= 0)).toBe(true);
    } finally {
      await tiny.close();
      await e.close();
    }
  });

  it("without a scoring model: no refinement offered, no surprisal", async () => {
    const e = await LlamaServerEngine.connect({ backends: [fake.url] });
    try {
      expect(e.scoresPrompts).toBe(false);
      expect(await surprisalOf(e, e.tokenize("the dog"))).toBeUndefined();
    } finally {
      await e.close();
    }
  });

  it("a scoring model with another tokenizer: INVALID_ARGUMENT naming it", async () => {
    const err = await LlamaServerEngine.connect({ backends: [fake.url], refineModel: paths.tinyB }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((err as PddError).message).toMatch(/tiny-b\.gguf tokenizes otherwise/);
  });
});
