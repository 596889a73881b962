/**
 * Where a token sequence ends inside a UTF-8 character, on the generated
 * tiny model's real byte tokens: the requests the llama-server slot sends
 * must start from whole text (llama-server-utf8.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import { createModel, PRESETS } from "./index.js";
import { tokensInPartialCharacter, wholeTextPrefix } from "./llama-server-utf8.js";
import { describeModel } from "./model-info.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-utf8-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const path = join(dir, "tiny.gguf");
createModel(path, PRESETS.tiny);
const { pieces } = describeModel(path);
/** The token whose bytes are exactly `bytes`. */
const token = (...bytes: number[]) => {
  const id = pieces.findIndex((p) => p.length === bytes.length && p.every((b, i) => b === bytes[i]));
  if (id < 0) throw new Error(`no token for ${bytes}`);
  return id;
};
const word = pieces.findIndex((p) => Buffer.from(p).toString() === "the");
const dash = [token(0xe2), token(0x80), token(0x94)]; // "—"
const smile = [token(0xf0), token(0x9f), token(0x99), token(0x82)]; // "🙂"

describe("tokensInPartialCharacter", () => {
  it("counts the tokens of an unfinished character at the end, and 0 once it is whole", () => {
    expect(tokensInPartialCharacter([word], pieces)).toBe(0);
    expect(tokensInPartialCharacter([word, dash[0]!], pieces)).toBe(1);
    expect(tokensInPartialCharacter([word, dash[0]!, dash[1]!], pieces)).toBe(2);
    expect(tokensInPartialCharacter([word, ...dash], pieces)).toBe(0);
    expect(tokensInPartialCharacter([word, ...smile.slice(0, 3)], pieces)).toBe(3);
    expect(tokensInPartialCharacter([word, ...smile], pieces)).toBe(0);
    expect(tokensInPartialCharacter([], pieces)).toBe(0);
  });
});

describe("wholeTextPrefix", () => {
  it("cuts answer tokens back to whole text, and returns the cut ones to decode again", () => {
    expect(wholeTextPrefix([word, word, smile[0]!, smile[1]!], pieces, 2)).toEqual({
      prompt: [word, word],
      again: [smile[0], smile[1]],
    });
    expect(wholeTextPrefix([word, ...dash], pieces, 1)).toEqual({ prompt: [word, ...dash], again: [] });
  });

  it("refuses a prompt that itself ends inside a character: INVALID_ARGUMENT", () => {
    const e = (() => {
      try {
        wholeTextPrefix([word, dash[0]!], pieces, 2);
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(PddError);
    expect((e as PddError).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });
});
