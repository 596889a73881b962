import { describe, expect, it } from "vitest";
import { keptFor, surprisalDrop } from "./refine.js";

describe("surprisal-drop refinement", () => {
  const tokens = [1, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  const s = [Number.NaN, 5, 0.1, 3, 0.2, 4, 0.3, 2, 0.4, 1];

  it("drops the least surprising tokens down to the target ratio, keeping t0 and the tail", () => {
    const r = surprisalDrop(tokens, s, { targetRatio: 0.5, minKeepTokens: 0, keepTailTokens: 2 });
    // t0 and the tail (8, 9) stay; the five least surprising of the rest go: 2, 4, 6, 7, 3.
    expect(r.keptTokens).toBe(5);
    expect(r.kept).toEqual([
      { start: 0, end: 2 },
      { start: 5, end: 6 },
      { start: 8, end: 10 },
    ]);
    expect(r.ratio).toBe(0.5);
  });

  it("never keeps fewer than min_keep_tokens and breaks ties by lower index first", () => {
    const flat = new Array(10).fill(1);
    const r = surprisalDrop(tokens, flat, { targetRatio: 0.1, minKeepTokens: 7, keepTailTokens: 0 });
    expect(r.keptTokens).toBe(7);
    expect(r.kept).toEqual([
      { start: 0, end: 1 },
      { start: 4, end: 10 },
    ]);
  });

  it("keeps ⌈r·n⌉ of r in float32 millionths: 6 of 10 at 0.6, over protobuf (float32) and MessagePack alike", () => {
    expect(keptFor(Math.fround(0.6), 10)).toBe(6); // ⌈0.6000000238 × 10⌉ in doubles is 7
    expect(keptFor(0.6, 10)).toBe(6);
    expect(keptFor(0.6, 11)).toBe(7);
    expect(keptFor(0.5, 7)).toBe(4);
    expect(
      surprisalDrop(tokens, s, { targetRatio: Math.fround(0.6), minKeepTokens: 0, keepTailTokens: 0 }).keptTokens,
    ).toBe(6);
  });

  it("keeps everything at ratio 1 as one span", () => {
    expect(surprisalDrop(tokens, s, { targetRatio: 1, minKeepTokens: 0, keepTailTokens: 0 }).kept).toEqual([
      { start: 0, end: 10 },
    ]);
  });
});
