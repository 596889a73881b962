/**
 * `npm run test:llama-server`: `--backend-api openai` against a real
 * llama-server's OpenAI-compatible `/v1/completions` (vLLM's API; vLLM itself
 * was not run here). Greedy tokens through it equal those through the native
 * `/completion` for the same token-ID prompt; where llama-server holds back a
 * token ending inside a UTF-8 character, the OpenAI endpoint gives no ID for
 * it, and the openai mode says so instead of answering short.
 *
 * Without the binary the suite skips with a message saying so, unless
 * PDD_REQUIRE_LLAMA_SERVER=1 (CI), which makes a missing binary a failure.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaServerSuite } from "./llama-server-suite.js";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  createModel,
  LlamaServerEngine,
  PRESETS,
  startLlamaServer,
  type LlamaServerProcess,
} from "../../engine/index.js";
import { greedy } from "../../engine/test/greedy.js";
import { PddError } from "../../proto/index.js";

const { found, suite } = llamaServerSuite();

const dir = mkdtempSync(join(tmpdir(), "pdd-llama-server-openai-it-"));
const tiny = join(dir, "tiny.gguf");
let backend: LlamaServerProcess | undefined;
let native: LlamaServerEngine | undefined;
let openai: LlamaServerEngine | undefined;

// The tiny model's greedy answer to this prompt: " brown fox jumps over the lazy dog" (8 tokens of whole text), then
// " —", whose first byte tokens end inside a UTF-8 character.
const PROMPT = "one two three four five six";
const WHOLE = 8;

suite("llama-server's OpenAI endpoint as a token-ID backend (--backend-api openai)", () => {
  beforeAll(async () => {
    createModel(tiny, PRESETS.tiny);
    backend = await startLlamaServer({ binary: found!.binary, model: tiny, slots: 2 });
    const o = { backends: [backend.url], modelPath: tiny };
    native = await LlamaServerEngine.connect(o);
    openai = await LlamaServerEngine.connect({ ...o, backendApi: "openai" });
  });
  afterAll(async () => {
    await native?.close();
    await openai?.close();
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("greedy tokens via /v1/completions equal those via /completion for the same token-ID prompt", async () => {
    const prompt = native!.tokenize(PROMPT);
    const expected = await greedy(native!, prompt, WHOLE);
    expect(expected).toHaveLength(WHOLE);
    expect(await greedy(openai!, prompt, WHOLE)).toEqual(expected);
  });

  it("a token held back inside a UTF-8 character: native recovers it, openai fails typed, naming native", async () => {
    const prompt = native!.tokenize(PROMPT);
    const n = WHOLE + 6;
    expect(await greedy(native!, prompt, n)).toHaveLength(n);
    const err = await greedy(openai!, prompt, n).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).message).toMatch(/generated \d+ tokens but gave the IDs of \d+.*--backend-api native/);
  });
});
