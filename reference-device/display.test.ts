/**
 * The device's display on its own: it shows tokens in order, decodes UTF-8
 * across token boundaries, drops queued cloud tokens past the takeover
 * (PDD-TAKEOVER-003) and ends when closed and empty. A target of 0 ms means
 * no pacing, so nothing here waits on a timer.
 */
import { describe, expect, it } from "vitest";
import { countStalls, Display } from "./display.js";

const unpaced = { cloudRemaining: () => 0, localEtaMs: () => undefined, localTpotMs: () => undefined };
const bytes = (...b: number[]) => Uint8Array.from(b);

describe("the device's display", () => {
  it("shows a character split across tokens once it is whole, and the text in order", async () => {
    const texts: string[] = [];
    const d = new Display(0, unpaced, (t) => texts.push(t));
    const shown = d.run();
    d.push({ piece: bytes(0x68, 0xc3), source: "cloud" }); // "h" and half of "é"
    d.push({ piece: bytes(0xa9), source: "cloud" });
    d.push({ piece: bytes(0x21), source: "device" });
    d.close();
    await shown;
    d.flush();
    expect(texts).toEqual(["h", "é", "!"]);
    expect(d.shownCloud).toBe(2);
    expect(d.timing(0)).toMatchObject({ text: "hé!", stalls: 0 });
  });

  it("drops queued cloud tokens at or past the takeover index, counting those already shown", async () => {
    let firstShown!: () => void;
    const shownA = new Promise<void>((r) => (firstShown = r));
    const d = new Display(0, unpaced, (t) => t === "a" && firstShown());
    const shown = d.run();
    d.push({ piece: Buffer.from("a"), source: "cloud" });
    await shownA;
    for (const c of "bcd") d.push({ piece: Buffer.from(c), source: "cloud" });
    d.dropCloudFrom(2); // "a" is shown, "b" is token 1: "c" and "d" go
    d.push({ piece: Buffer.from("X"), source: "device" });
    d.close();
    await shown;
    expect(d.timing(0).text).toBe("abX");
  });

  // Issue 16: an answer cut at max tokens inside "€" ended in U+FFFD.
  it("holds back an incomplete character at the end of the answer", async () => {
    const texts: string[] = [];
    const d = new Display(0, unpaced, (t) => texts.push(t));
    const shown = d.run();
    d.push({ piece: bytes(0x61, 0xe2, 0x82), source: "cloud" });
    d.close();
    await shown;
    d.flush();
    expect(texts.join("")).toBe("a");
    expect(d.timing(0).text).toBe("a");
  });
});

describe("countStalls", () => {
  it("counts every gap between shown tokens over twice the target, whatever made it", () => {
    expect(countStalls([40, 41, 80, 81, 160.5], 40)).toBe(2);
    expect(countStalls([500], 0)).toBe(0);
  });
});
