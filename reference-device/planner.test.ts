/** The planner's choices follow from its inputs: checked against the model it documents, and at the edges. */
import { describe, expect, it } from "vitest";
import { plan, type PlanInput } from "./planner.js";

const base: PlanInput = {
  promptTokens: 1000,
  answerTokens: 200,
  rttMs: 50,
  bandwidthMbps: 100,
  cloud: { queueMs: 0, prefillTokPerS: 5000, decodeTokPerS: 100 },
  device: { prefillTokPerS: 200, decodeTokPerS: 40 },
  targetTpotMs: 50,
};

describe("planner", () => {
  it("predicts TTFT as RTT + queue + cloud prefill + one decode step, and the device-only TTFT", () => {
    const p = plan({ ...base, cloud: { ...base.cloud, queueMs: 30 } });
    expect(p.chosen.ttftMs).toBeCloseTo(50 + 30 + 200 + 10, 5);
    expect(p.deviceOnly.ttftMs).toBeCloseTo(5000 + 25, 5);
    expect(p.mode).toBe("pd");
  });

  it("gives a budget that covers the takeover index, so the display never runs dry", () => {
    const p = plan(base);
    const c = p.chosen;
    // k solves k = 1 + (ready + k/dp − TTFT)/I with ready = 5000, TTFT = 260, I = 50, 1/dp = 5 ms.
    expect(c.takeoverIndex).toBe(Math.ceil((1 + (5000 - 260) / 50) / (1 - 5 / 50)));
    expect(c.budget).toBeGreaterThanOrEqual(c.takeoverIndex);
    expect(c.stall).toBe(false);
    expect(c.maxTpotMs).toBe(50);
  });

  it("lets the cloud serve the whole answer when the device would take over after its end", () => {
    const p = plan({ ...base, answerTokens: 20 });
    expect(p.mode).toBe("cloud");
    expect(p.chosen.budget).toBe(20);
    expect(p.chosen.stall).toBe(false);
    expect(p.chosen.maxTpotMs).toBeLessThanOrEqual(base.targetTpotMs);
    expect(p.chosen.cloudCostMs).toBeCloseTo(p.cloudOnly.cloudCostMs, 5);
  });

  it("uses a cheaper path when allowed: KV on a fast link, refinement when its ratio is allowed", () => {
    const recompute = plan(base).chosen;
    const kv = plan({ ...base, bandwidthMbps: 1000, kv: { allowed: true, bytesPerToken: 32_768 } }).chosen;
    expect(kv.kv).toBe(true);
    expect(kv.cloudCostMs).toBeLessThan(recompute.cloudCostMs);
    const slowLink = plan({ ...base, bandwidthMbps: 1, kv: { allowed: true, bytesPerToken: 32_768 } }).chosen;
    expect(slowLink.kv).toBe(false); // 32 MB at 1 Mbit/s is slower than prefilling
    const refined = plan({ ...base, refine: { allowed: true, minRatio: 0.5 } }).chosen;
    expect(refined.ratio).toBe(0.5);
    expect(refined.budget).toBeLessThan(recompute.budget);
    expect(plan({ ...base, refine: { allowed: true, minRatio: 0.9 } }).chosen.ratio).toBe(1);
  });

  it("counts the prompt prefix prefilled before the refined prompt came, unless the device starts over", () => {
    // The refined prompt comes as the cloud's prefill ends: 50 + 200 = 250 ms, 50 tokens into the device's 5 s prefill.
    const ready = (keepsPrefilled?: boolean) =>
      plan({ ...base, refine: { allowed: true, minRatio: 0.5, keepsPrefilled } }).candidates.find(
        (c) => c.ratio === 0.5,
      )!;
    expect(ready().readyMs).toBeCloseTo(250 + 0.5 * (5000 - 250), 5);
    expect(ready(false).readyMs).toBeCloseTo(250 + 0.5 * 5000, 5);
    expect(ready().budget).toBeLessThan(ready(false).budget);
  });

  it("reports the stall when the cloud's budget limit is below the takeover", () => {
    const p = plan({ ...base, budget: { max: 16 } });
    expect(p.chosen.budget).toBe(16);
    expect(p.chosen.stall).toBe(true);
    expect(p.chosen.maxTpotMs).toBeGreaterThan(100);
    expect(p.explanation.join("\n")).toMatch(/No candidate keeps the target/);
  });

  it("bounds TPOT by the device's decode step when the device decodes slower than the target", () => {
    expect(plan({ ...base, device: { prefillTokPerS: 200, decodeTokPerS: 10 } }).chosen.maxTpotMs).toBe(100);
  });

  it("serves locally when the device alone answers first", () => {
    const p = plan({ ...base, promptTokens: 10, rttMs: 400 });
    expect(p.mode).toBe("local");
  });

  it("refuses nonsense inputs with a clear error", () => {
    expect(() => plan({ ...base, promptTokens: 0 })).toThrow(/promptTokens must be a positive number/);
    expect(() => plan({ ...base, rttMs: -1 })).toThrow(/rttMs must be ≥ 0/);
    expect(() => plan({ ...base, device: { prefillTokPerS: Number.NaN, decodeTokPerS: 1 } })).toThrow(
      /device.prefillTokPerS/,
    );
  });
});
