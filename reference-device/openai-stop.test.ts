import { describe, expect, it } from "vitest";
import { StopMatcher } from "./openai-stop.js";

function feed(stops: string[], pieces: string[]) {
  const emitted: string[] = [];
  const m = new StopMatcher(stops, (t) => emitted.push(t));
  let stoppedAt = -1;
  pieces.forEach((p, i) => {
    if (m.push(p) && stoppedAt < 0) stoppedAt = i;
  });
  m.end();
  return { text: m.text, emitted, stoppedAt, matched: m.matched };
}

describe("stop strings", () => {
  it("a stop string split across pieces ends the text before it, at the piece that completes it", () => {
    const r = feed(["END"], ["one E", "N", "D two", " three"]);
    expect(r.text).toBe("one ");
    expect(r.stoppedAt).toBe(2);
    expect(r.matched).toBe("END");
  });

  it("text that only looks like the start of a stop string is released once it cannot be one", () => {
    const r = feed(["END"], ["a E", "x", "b"]);
    expect(r.text).toBe("a Exb");
    expect(r.emitted).toEqual(["a ", "Ex", "b"]);
    expect(r.stoppedAt).toBe(-1);
  });

  it("the earliest of several stop strings wins", () => {
    expect(feed(["cd", "b"], ["abcd"]).text).toBe("a");
  });

  it("a held-back tail is released when generation ends without a match", () => {
    expect(feed(["\n\n"], ["line\n"]).text).toBe("line\n");
  });
});
