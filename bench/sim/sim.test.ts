/** The trace simulation: deterministic for a seed, and its modes behave as their definitions say. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { markdown, runTraceBench } from "./bench.js";
import { CLOUD_GPU, PHONE, PHONE_NPU } from "./profiles.js";
import { NO_BATCHING, slowdown, VLLM_H100_8B } from "./batching.js";
import { SHAPES, synthesize } from "./shapes.js";
import { simulate } from "./simulate.js";
import { readTrace } from "./trace.js";

/** A small synthetic trace in the Azure CSV format (the real one is not needed at test time). */
function traceFile(rows: number): string {
  const lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"];
  for (let i = 0; i < rows; i++) {
    const s = (i * 0.37).toFixed(7).padStart(10, "0");
    lines.push(
      `2023-11-16 18:${String(15 + Math.floor(i / 60)).padStart(2, "0")}:${String(i % 60).padStart(2, "0")}.${s.split(".")[1]},` +
        `${200 + ((i * 7919) % 3000)},${10 + ((i * 104729) % 400)}`,
    );
  }
  const path = join(mkdtempSync(join(tmpdir(), "pdd-trace-")), "trace.csv");
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

const base = {
  bandwidthMbps: 100,
  cloud: CLOUD_GPU,
  device: PHONE,
  capacity: 16,
  targetTpotMs: 50,
  timeScale: 1,
  minRefineRatio: 0.5,
  jitter: 0.1,
  seed: 7,
};

describe("trace simulation", () => {
  it("reads the Azure CSV format, arrivals relative to the first row", () => {
    const t = readTrace(traceFile(5));
    expect(t).toHaveLength(5);
    expect(t[0]!.atMs).toBe(0);
    expect(t[1]!.atMs).toBeGreaterThan(0);
    expect(t[0]).toMatchObject({ promptTokens: 200, answerTokens: 10 });
  });

  it("rejects a file that is not a trace with a clear error", () => {
    const bad = join(mkdtempSync(join(tmpdir(), "pdd-trace-")), "bad.csv");
    writeFileSync(bad, "a,b,c\n1,2,3\n");
    expect(() => readTrace(bad)).toThrow(/expected the header TIMESTAMP,ContextTokens,GeneratedTokens/);
    expect(() => readTrace("/nonexistent.csv")).toThrow(/cannot read trace/);
  });

  it("gives the same table for the same seed", () => {
    const t = readTrace(traceFile(300));
    const a = markdown(runTraceBench(t, base, [20, 150]));
    const b = markdown(runTraceBench(t, base, [20, 150]));
    expect(a).toBe(b);
    expect(markdown(runTraceBench(t, { ...base, seed: 8 }, [20, 150]))).not.toBe(a);
  });

  it("P/D with the planner and speed controller keeps every gap at the target, without stalls; without the controller it bursts and stalls", () => {
    const t = readTrace(traceFile(300));
    const c = { ...base, rttMs: 50, capacity: 1000 };
    const pd = simulate(t, { kind: "pd", budget: "planner", controller: true }, c);
    const gaps = pd.flatMap((r) => r.gaps);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(50 + 1e-6);
    const raw = simulate(t, { kind: "pd", budget: "planner", controller: false }, c);
    expect(raw.flatMap((r) => r.gaps).filter((g) => g > 100).length).toBeGreaterThan(0);
  });

  it("P/D takes its first token from the cloud and uses less cloud time than cloud-only", () => {
    const t = readTrace(traceFile(200));
    const c = { ...base, rttMs: 50, capacity: 1000, jitter: 0 };
    const pd = simulate(t, { kind: "pd", budget: "planner", controller: true }, c);
    const cloud = simulate(t, { kind: "cloud-only" }, c);
    const dev = simulate(t, { kind: "device-only" }, c);
    pd.forEach((r, i) => {
      expect(r.ttftMs).toBeCloseTo(cloud[i]!.ttftMs, 6);
      expect(r.cloudMs).toBeLessThanOrEqual(cloud[i]!.cloudMs + 1e-6);
      expect(r.ttftMs).toBeLessThan(dev[i]!.ttftMs);
    });
  });

  it("queues requests beyond the cloud's capacity (FIFO)", () => {
    const t = readTrace(traceFile(100)).map((r) => ({ ...r, atMs: 0 }));
    const c = { ...base, rttMs: 0, capacity: 2, jitter: 0 };
    const r = simulate(t, { kind: "cloud-only" }, c);
    expect(r[99]!.ttftMs).toBeGreaterThan(r[0]!.ttftMs * 10);
  });

  it("slows each cloud sequence as its batch grows, by the cited measurement, and not at all without a model", () => {
    expect(slowdown(VLLM_H100_8B, 1)).toBe(1);
    expect(slowdown(VLLM_H100_8B, 16)).toBeCloseTo(10.94 / 6.48, 9);
    expect(slowdown(VLLM_H100_8B, 10)).toBeGreaterThan(slowdown(VLLM_H100_8B, 4));
    expect(slowdown(VLLM_H100_8B, 10)).toBeLessThan(slowdown(VLLM_H100_8B, 16));
    expect(slowdown(VLLM_H100_8B, 128)).toBeCloseTo((2 * 46.91) / 6.48, 9);
    expect(slowdown(NO_BATCHING, 64)).toBe(1);
    // Sixteen requests at once: the batched cloud holds each sequence longer.
    const t = readTrace(traceFile(16)).map((r) => ({ ...r, atMs: 0 }));
    const c = { ...base, rttMs: 0, capacity: 16, jitter: 0 };
    const alone = simulate(t, { kind: "cloud-only" }, c);
    const batched = simulate(t, { kind: "cloud-only" }, { ...c, batching: VLLM_H100_8B });
    expect(batched.at(-1)!.cloudMs).toBeGreaterThan(1.5 * alone.at(-1)!.cloudMs);
    expect(batched[0]!.cloudMs).toBeCloseTo(alone[0]!.cloudMs, 6);
  });

  it("synthesizes each trace shape deterministically, near its stated medians", () => {
    for (const shape of SHAPES) {
      const t = synthesize(shape, 2000, 3);
      expect(synthesize(shape, 2000, 3)).toEqual(t);
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1000]!;
      expect(median(t.map((r) => r.promptTokens)) / shape.prompt.p50).toBeCloseTo(1, 0);
      expect(median(t.map((r) => r.answerTokens)) / shape.answer.p50).toBeCloseTo(1, 0);
      expect(t.every((r, i) => i === 0 || r.atMs >= t[i - 1]!.atMs)).toBe(true);
    }
  });

  it("P/D planner keeps every synthetic shape at the target TPOT without a stall, with batched decoding, refined or not", () => {
    for (const shape of SHAPES)
      for (const device of [PHONE, PHONE_NPU])
        for (const minRefineRatio of [1, 0.5]) {
          const t = synthesize(shape, 1500, 1);
          // As bench:shapes runs it: seed 1, without refinement and with it down to 0.5.
          const shapes = {
            rttMs: 50,
            capacity: 32,
            batching: VLLM_H100_8B,
            maxCloudBudget: 4096,
            minRefineRatio,
            seed: 1,
          };
          const c = { ...base, ...shapes, device };
          const gaps = simulate(t, { kind: "pd", budget: "planner", controller: true }, c).flatMap((r) => r.gaps);
          const worst = gaps.reduce((m, g) => Math.max(m, g), 0);
          const what = `${shape.name} on ${device.name}, refinement ≥ ${minRefineRatio}`;
          expect(gaps.filter((g) => g > 100).length, what).toBe(0);
          // Bursts on the NPU reached 66.9 ms: the device took over before the cloud's next token, then made the
          // display wait for its own first decode step (issue 18).
          expect(worst, what).toBeLessThanOrEqual(50 + 1e-6);
        }
  });
});
