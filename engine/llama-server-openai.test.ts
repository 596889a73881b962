/**
 * `--backend-api openai`: generation over `/v1/completions` with token IDs, against the fake llama-server's
 * vLLM-form endpoint ("token_id:N" logprobs tokens; vLLM itself was not run here) and against llama-server's own
 * logprobs form. The real llama-server's OpenAI endpoint is in reference-cloud/test/llama-server-openai.integration.ts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import { llamaRuntime } from "./engine.js";
import { createModel, LlamaServerEngine, PRESETS } from "./index.js";
import { choiceTokenIds, openaiChunk, openaiTokens } from "./llama-server-openai.js";
import { greedy } from "./test/greedy.js";
import { FakeLlamaServer, fakeModel, type FakeModel, type FakeOptions } from "./test/fake-llama-server.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-llama-server-openai-"));
const tiny = join(dir, "tiny.gguf");
let vocab: LlamaModel;
let model: FakeModel;
const fakes: FakeLlamaServer[] = [];
const engines: LlamaServerEngine[] = [];

beforeAll(async () => {
  createModel(tiny, PRESETS.tiny);
  vocab = await (await llamaRuntime()).loadModel({ modelPath: tiny, vocabOnly: true });
  model = fakeModel(tiny, (text) => vocab.tokenize(text, false) as number[]);
});
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  for (const f of fakes.splice(0)) await f.close();
});
afterAll(async () => {
  await vocab.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function openaiEngine(o: Partial<FakeOptions> = {}): Promise<{ f: FakeLlamaServer; e: LlamaServerEngine }> {
  const f = await FakeLlamaServer.start({ model, ...o });
  fakes.push(f);
  const e = await LlamaServerEngine.connect({ backends: [f.url], backendApi: "openai", healthIntervalMs: 50 });
  engines.push(e);
  return { f, e };
}

describe("llama-server engine, --backend-api openai", () => {
  it("sends the prompt as token IDs to /v1/completions and yields vLLM's token_id:N tokens", async () => {
    const { f, e } = await openaiEngine();
    const prompt = e.tokenize("the quick brown fox");
    expect(await greedy(e, prompt, 12)).toEqual(f.answer(prompt, 12));
    expect(f.openaiRequests).toHaveLength(1);
    expect(f.openaiRequests[0]).toMatchObject({
      prompt,
      max_tokens: 12,
      temperature: 0,
      stream: true,
      logprobs: 1,
      return_tokens_as_token_ids: true,
    });
  });

  it("a backend that streams no token IDs is a typed error naming both servers' settings", async () => {
    const { e } = await openaiEngine({ omitTokenIds: true });
    const err = await greedy(e, e.tokenize("the lazy dog"), 4).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).message).toMatch(/returned no token IDs.*vLLM.*return_tokens_as_token_ids.*llama-server/);
  });
});

describe("reading token IDs from an OpenAI completion choice", () => {
  it("reads llama-server's logprobs.content[].id and vLLM's logprobs.tokens 'token_id:N'", () => {
    expect(choiceTokenIds({ logprobs: { content: [{ id: 259, token: " " }, { id: 151 }] } })).toEqual([259, 151]);
    expect(choiceTokenIds({ logprobs: { tokens: ["token_id:259", "token_id:0"] } })).toEqual([259, 0]);
    expect(choiceTokenIds({ logprobs: { tokens: [" the"] } })).toBeUndefined(); // vLLM without the flag: text
    expect(choiceTokenIds({ logprobs: null, text: " the" })).toBeUndefined();
  });

  it("takes llama-server's per-chunk predicted_n as the count, so a held-back token shows as a gap", () => {
    const json = { choices: [{ text: "—", logprobs: { content: [{ id: 151 }] } }], timings: { predicted_n: 4 } };
    expect(openaiChunk(json, 1, "u")).toMatchObject({ tokens: [151], tokensPredicted: 4, stop: false });
    const last = { choices: [{ text: "", logprobs: null, finish_reason: "length" }] };
    expect(openaiChunk(last, 4, "u")).toMatchObject({ tokens: [], tokensPredicted: 4, stop: true, stopType: "limit" });
    expect(openaiChunk({ choices: [], usage: {} }, 4, "u")).toBeUndefined();
  });

  it("a non-streamed answer with fewer IDs than tokens generated is a typed error, not a shorter answer", () => {
    const json = { choices: [{ logprobs: { content: [{ id: 259 }] } }], usage: { completion_tokens: 3 } };
    expect(() => openaiTokens(json, "u")).toThrow(/generated 3 tokens but gave the IDs of 1/);
    try {
      openaiTokens(json, "u");
    } catch (e) {
      expect((e as PddError).code).toBe(ErrorCode.INTERNAL);
    }
  });
});
