import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../proto/index.js";
import { checkTokenizable, untokenizableIn } from "./byte-fallback.js";
import { readGgufHeader } from "./gguf.js";
import { createModel, PRESETS } from "./model-create.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-bytes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vocabWithout(byte?: number) {
  const path = join(dir, `m-${byte ?? "all"}.gguf`);
  createModel(path, { ...PRESETS.spec, missingByte: byte });
  return untokenizableIn(readGgufHeader(path));
}

describe("texts a vocabulary cannot tokenize (PDD-TOK-002)", () => {
  it("none when every byte has a byte token: no check at all", () => {
    expect(vocabWithout(undefined)).toBeUndefined();
  });

  it("a character without a token whose bytes include the missing byte token", () => {
    const f = vocabWithout(0xf4)!;
    expect(f("the quick fox — naïve 🙂")).toBeUndefined();
    expect(f("a \u{10FFFD} b")).toBe("\u{10FFFD}");
    expect(() => checkTokenizable(f, "x\u{100000}")).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringContaining("U+100000") }),
    );
  });

  it("the generator refuses to drop a byte the model's sentence needs", () => {
    expect(() => createModel(join(dir, "bad.gguf"), { ...PRESETS.spec, missingByte: 0xf0 })).toThrow(RangeError);
  });
});
