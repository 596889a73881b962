import { describe, expect, it } from "vitest";
import { SpeedController } from "./speed-controller.js";
import { completeUtf8Prefix } from "./utf8.js";

describe("speed controller", () => {
  const c = new SpeedController(40);

  it("paces a burst of cloud tokens at the target TPOT", () => {
    expect(c.nextDelay({ buffered: 20, cloudRemaining: 0, localEtaMs: 100, localTpotMs: 30, local: false })).toBe(40);
  });

  it("stretches the buffer when the local model needs longer than the tokens last", () => {
    // 5 tokens for 400 ms: 80 ms each would run dry exactly on time; aim past it by 5% and one
    // target interval (40 ms), since an estimate a little late is otherwise a stall: (420 + 40) / 5.
    expect(
      c.nextDelay({ buffered: 3, cloudRemaining: 2, localEtaMs: 400, localTpotMs: undefined, local: false }),
    ).toBeCloseTo(92, 9);
  });

  it("does not stretch when the tokens it holds last at the target pace", () => {
    // 10 tokens × 40 ms cover 380 ms with room: the target pace, no margin added.
    expect(c.nextDelay({ buffered: 4, cloudRemaining: 6, localEtaMs: 380, localTpotMs: undefined, local: false })).toBe(
      40,
    );
  });

  it("never stretches beyond its readable floor", () => {
    expect(
      c.nextDelay({ buffered: 1, cloudRemaining: 0, localEtaMs: 10_000, localTpotMs: undefined, local: false }),
    ).toBe(160);
  });

  it("eases into a slower local decoder before the handover", () => {
    expect(c.nextDelay({ buffered: 2, cloudRemaining: 0, localEtaMs: undefined, localTpotMs: 70, local: false })).toBe(
      70,
    );
  });
});

describe("UTF-8 seam", () => {
  const b = (s: string) => new Uint8Array(Buffer.from(s, "utf8"));
  it("cuts before an incomplete multi-byte character", () => {
    const full = b("ab🙂");
    expect(completeUtf8Prefix(full)).toBe(6);
    expect(completeUtf8Prefix(full.subarray(0, 5))).toBe(2);
    expect(completeUtf8Prefix(full.subarray(0, 3))).toBe(2);
    expect(completeUtf8Prefix(b("naï").subarray(0, 3))).toBe(2);
    expect(completeUtf8Prefix(b("—"))).toBe(3);
    expect(completeUtf8Prefix(new Uint8Array())).toBe(0);
  });
});
