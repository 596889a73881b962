/**
 * The embedded default model (tiny) carries a ChatML chat template, and a
 * cache written before it had one is regenerated, not used as is: the
 * template is outside the fingerprints, so both files are the same model to
 * a peer (issue 17).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "./default-model.js";
import { fingerprints, sameBytes } from "./fingerprint.js";
import { readGgufHeader } from "./gguf.js";
import { CHATML_TEMPLATE, createModel, PRESETS } from "./model-create.js";

let cache: string;
const saved = process.env.PDD_CACHE;
beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), "pdd-cache-"));
  process.env.PDD_CACHE = cache;
});
afterEach(() => {
  if (saved === undefined) delete process.env.PDD_CACHE;
  else process.env.PDD_CACHE = saved;
  rmSync(cache, { recursive: true, force: true });
});

const template = (path: string) => readGgufHeader(path).metadata.get("tokenizer.chat_template");

describe("the embedded default model", () => {
  it("is generated with the ChatML template", () => {
    expect(template(ensureDefaultModel("tiny"))).toBe(CHATML_TEMPLATE);
  });

  it("regenerates a cached tiny from before the template, and the two are the same model by fingerprint", () => {
    const path = join(cache, "pdd-tiny.gguf");
    createModel(path, { ...PRESETS.tiny, chatTemplate: undefined });
    const old = fingerprints(path);
    const oldBytes = readFileSync(path);
    expect(template(path)).toBeUndefined();
    expect(ensureDefaultModel("tiny")).toBe(path);
    expect(template(path)).toBe(CHATML_TEMPLATE);
    expect(readFileSync(path).equals(oldBytes)).toBe(false);
    const now = fingerprints(path);
    expect(sameBytes(now.model, old.model)).toBe(true);
    expect(sameBytes(now.tokenizer, old.tokenizer)).toBe(true);
  });

  it("regenerates a cached file that is not a GGUF (a truncated write)", () => {
    const path = join(cache, "pdd-tiny.gguf");
    writeFileSync(path, "GGUF");
    ensureDefaultModel("tiny");
    expect(template(path)).toBe(CHATML_TEMPLATE);
  });

  it("regenerates a cached tiny from before ChatML's control tokens: another vocabulary, another model", () => {
    const path = join(cache, "pdd-tiny.gguf");
    createModel(path, { ...PRESETS.tiny, chatTokens: false });
    const old = fingerprints(path);
    ensureDefaultModel("tiny");
    const tokens = readGgufHeader(path).metadata.get("tokenizer.ggml.tokens") as string[];
    expect(tokens.slice(-2)).toEqual(["<|im_start|>", "<|im_end|>"]);
    expect(sameBytes(fingerprints(path).tokenizer, old.tokenizer)).toBe(false);
  });

  it("keeps a cached preset without a template when its preset has none", () => {
    const path = join(cache, "pdd-tiny-eos.gguf");
    createModel(path, PRESETS["tiny-eos"]);
    const before = readFileSync(path);
    ensureDefaultModel("tiny-eos");
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});
