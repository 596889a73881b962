/**
 * The live replay runs trace requests through the real cloud, devices,
 * binding and network emulator. Checked here: every answer arrives whole on
 * every mode, the cloud serves what the mode says, and the model predicts
 * each request. Timing agreement is the benchmark's to report, not a test's.
 */
import { describe, expect, it } from "vitest";
import { SimEngine } from "../../engine/index.js";
import { DEFAULT_LIVE, promptOf, replayLive } from "./live.js";
import { CLOUD_GPU, PHONE } from "./profiles.js";

// Rates 100× the published ones, so a run takes a second.
const device = { ...PHONE, prefillTokPerS: 100 * PHONE.prefillTokPerS, decodeTokPerS: 100 * PHONE.decodeTokPerS };
const cloud = {
  ...CLOUD_GPU,
  prefillTokPerS: 100 * CLOUD_GPU.prefillTokPerS,
  decodeTokPerS: 100 * CLOUD_GPU.decodeTokPerS,
};
const trace = [
  { atMs: 0, promptTokens: 900, answerTokens: 40 },
  { atMs: 3, promptTokens: 2000, answerTokens: 25 },
  { atMs: 9, promptTokens: 300, answerTokens: 60 },
];
const config = { ...DEFAULT_LIVE, rttMs: 4, targetTpotMs: 2, capacity: 2, device, cloud };

describe("live trace replay", () => {
  it("makes prompts of exactly the trace's token counts", () => {
    const e = new SimEngine({ profile: PHONE });
    for (const n of [2, 17, 1020, 4096]) expect(e.tokenize(promptOf(n))).toHaveLength(n);
  });

  it.each(["pd", "cloud-only", "device-only"] as const)(
    "%s: every request shows its whole answer, and the model predicts each",
    async (mode) => {
      const r = await replayLive(trace, mode, config);
      expect(r.errors).toEqual([]);
      expect(r.fallbacks).toBe(0);
      expect(r.measured.map((m) => m.gaps.length + 1)).toEqual(trace.map((t) => t.answerTokens));
      expect(r.predicted).toHaveLength(trace.length);
      expect(r.modes).toEqual(trace.map(() => (mode === "device-only" ? "local" : "pd")));
      // Every request asks the cloud, but in P/D one may be taken over while it still waits for a
      // sequence (the cloud holds two): then it never holds one.
      if (mode === "pd") expect(r.cloud.requests).toBeLessThanOrEqual(trace.length);
      else expect(r.cloud.requests).toBe(mode === "device-only" ? 0 : trace.length);
      if (mode === "cloud-only") expect(r.cloud.decoded).toBe(trace.reduce((n, t) => n + t.answerTokens, 0));
      if (mode === "pd") expect(r.cloud.decoded).toBeLessThan(trace.reduce((n, t) => n + t.answerTokens, 0));
    },
  );
});
