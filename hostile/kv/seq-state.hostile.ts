/** The sequence-state parser reads a real image of the embedded model, and each mutation changes only what it names. */
import { afterAll, describe, expect, it } from "vitest";
import { deviceCase } from "../device/fixture.js";
import { closeLocalEngine } from "../harness/normal-device.js";
import { MUTATIONS } from "./mutations.js";
import { parseSeqState, SeqStateError, writeSeqState } from "./seq-state.js";

afterAll(() => closeLocalEngine());

describe("llama.cpp sequence-state images", { tags: ["quick"] }, () => {
  it("a real image parses: its tokens are the prompt, one stream holds one cell per position, and it writes back byte for byte", async () => {
    const c = await deviceCase();
    const { state } = parseSeqState(c.image);
    expect(state.tokens).toEqual(c.promptTokens);
    const full = state.streams.filter((s) => s.cells.length > 0);
    expect(full).toHaveLength(1);
    expect(full[0]!.cells.map((x) => x.pos)).toEqual(c.promptTokens.map((_, i) => i));
    expect(full[0]!.k!.every((l) => l.data.length === l.size * c.promptTokens.length)).toBe(true);
    expect(Buffer.from(writeSeqState(state)).equals(Buffer.from(c.image))).toBe(true);
  });

  it("refuses a count that cannot fit in the bytes left before allocating for it", async () => {
    const c = await deviceCase();
    const huge = MUTATIONS.find((m) => m.name === "cell count 2^31−1")!.build(c.image, c.engine.contextSize);
    expect(() => parseSeqState(huge)).toThrow(SeqStateError);
    expect(() => parseSeqState(c.image.subarray(0, c.image.length - 1))).toThrow(SeqStateError);
  });

  it.each(MUTATIONS.map((m) => [m.name, m] as const))("the mutation %s changes the image", async (_n, m) => {
    const c = await deviceCase();
    const img = m.build(c.image, c.engine.contextSize);
    expect(Buffer.from(img).equals(Buffer.from(c.image))).toBe(false);
  });

  it("token count 0 and more-cells-than-context images are consistent: only the count is hostile", async () => {
    const c = await deviceCase();
    const zero = parseSeqState(MUTATIONS[0]!.build(c.image, c.engine.contextSize)).state;
    expect(zero.tokens).toEqual([]);
    const big = parseSeqState(
      MUTATIONS.find((m) => m.name.startsWith("more cells"))!.build(c.image, c.engine.contextSize),
    ).state;
    expect(Math.max(...big.streams.map((s) => s.cells.length))).toBe(c.engine.contextSize + 1);
  });

  it("the position and sequence mutations change only the cell they name", async () => {
    const c = await deviceCase();
    const cellsOf = (img: Uint8Array) => parseSeqState(img).state.streams.find((s) => s.cells.length > 0)!.cells;
    const real = cellsOf(c.image);
    const built = (prefix: string) => MUTATIONS.find((m) => m.name.startsWith(prefix))!.build(c.image, 0);
    const unordered = cellsOf(built("positions not increasing"));
    expect(unordered.map((x) => x.pos)).toEqual([...real.slice(0, -1).map((x) => x.pos), 0]);
    const shared = cellsOf(built("a cell in two sequences"));
    expect(shared[0]!.seqIds).toEqual([...real[0]!.seqIds, 1]);
    expect(shared.slice(1)).toEqual(real.slice(1));
  });
});
