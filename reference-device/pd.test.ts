/**
 * The P/D-Device method end to end, with llama.cpp on both sides: a takeover
 * stops the cloud at once, a text handover between different models loses
 * or doubles no character, and a refined prompt is prefilled. The answer's
 * equality with the device-only one on every transport is interop.test.ts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, PRESETS, SKELETON_TEXT } from "../engine/index.js";
import { until } from "../proto/test/until.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import type { Report } from "./run.js";
import { promptOf as promptOfTokens } from "./test/prompt.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-e2e-"));
const paths = { tiny: join(dir, "tiny.gguf"), small: join(dir, "small.gguf"), tinyB: join(dir, "tiny-b.gguf") };
let cloud: CloudPeer;
let engine: Engine;

const promptOf = (n: number) => promptOfTokens(engine, n);

beforeAll(async () => {
  createModel(paths.tiny, PRESETS.tiny);
  engine = await Engine.load({ modelPath: paths.tiny, sequences: 4, threads: 1 });
  cloud = await startCloud({
    model: paths.tiny,
    threads: 1,
    logLevel: "silent",
    // Paced requests (only the takeover test's) get a token every 4 display intervals: a budget
    // outlasts the device's catch-up by far, however slow the machine (the other tests do not pace).
    decodePace: 0.25,
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const ids = (r: { cloudTokenIds: number[]; deviceTokenIds: number[] }) => [...r.cloudTokenIds, ...r.deviceTokenIds];

describe("takeover", () => {
  it("stops the cloud at once and frees its sequence", async () => {
    const decodedBefore = (await cloud.metrics.decodedTokens.get()).values[0]?.value ?? 0;
    const freed = async () =>
      (await cloud.metrics.sequencesFreed.get()).values.find((v) => v.labels.reason === "takeover")?.value ?? 0;
    const freedBefore = await freed();
    // The cloud paces at a quarter of the 40 ms display rate (160 ms a token);
    // the device prefills 300 tokens at ~1-2 ms each and catches up in well
    // under a second, long before the 150-token budget (24 s of cloud
    // decoding) is spent, however loaded the machine. At 80 ms a token a
    // Takeover delayed beside CPU hogs once let the cloud decode k + 3.
    const device = await PdDevice.create({
      engine,
      emulate: { prefillMsPerToken: 1 },
      cloud: cloud.urls.ws,
      useKv: false,
    });
    const r = await device.generate(promptOf(300), { maxTokens: 150, cloudBudget: 150, targetTpotMs: 40 });
    await device.close();
    expect(r.endReason).toBe("TAKEN_OVER");
    const k = r.takeoverIndex!;
    expect(k).toBeGreaterThan(0);
    expect(k).toBeLessThan(150);
    // The sequence is freed by the takeover (not by the budget running out), whenever the cloud gets to it.
    await until(async () => (await freed()) === freedBefore + 1, "the cloud to free the taken-over sequence");
    expect(cloud.engine.busy).toBe(0);
    const decoded = ((await cloud.metrics.decodedTokens.get()).values[0]?.value ?? 0) - decodedBefore;
    // The cloud decoded what it sent before it saw the takeover, plus at most the one in progress.
    console.log(`takeover at k=${k}: cloud decoded ${decoded} tokens (device discarded ${decoded - k} in flight)`);
    expect(decoded).toBeGreaterThanOrEqual(k);
    expect(decoded).toBeLessThanOrEqual(k + 2);
  });
});

describe("different models on each side", () => {
  let bigCloud: CloudPeer;
  let deviceEngine: Engine;
  beforeAll(async () => {
    createModel(paths.small, PRESETS.small);
    createModel(paths.tinyB, PRESETS["tiny-b"]);
    bigCloud = await startCloud({ model: paths.small, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
    deviceEngine = await Engine.load({ modelPath: paths.tinyB, sequences: 4, threads: 1 });
  });
  afterAll(async () => {
    await bigCloud.close({ drainSeconds: 0 });
    await deviceEngine.close();
  });

  it("hands over through text with no missing or doubled character, wherever the seam falls", async () => {
    const sentence = SKELETON_TEXT.repeat(8);
    // Budgets 1..26 put the seam after every token of the sentence, including
    // inside "—", "ï" and "🙂", which the cloud spells in single bytes.
    for (let budget = 1; budget <= 26; budget++) {
      // A phone-speed device: the cloud's budget is all in before it can take over. 40 ms a token, not 20:
      // beside CPU hogs the cloud's first token once came after the device's own (budget 8, 0 cloud tokens).
      const device = await PdDevice.create({
        engine: deviceEngine,
        cloud: bigCloud.urls.ws,
        emulate: { prefillMsPerToken: 40 },
      });
      const r = await device.generate("Begin.", { maxTokens: 40, cloudBudget: budget, targetTpotMs: 0 });
      await device.close();
      expect(r.mode).toBe("pd");
      expect(r.cloudTokens, `budget ${budget}`).toBeGreaterThan(0);
      // The answer may stop (max_tokens) inside a character: that last one is not a seam.
      const text = r.text.replace(/\uFFFD$/, "");
      expect(sentence.startsWith(text), `budget ${budget}: ${JSON.stringify(r.text)}`).toBe(true);
      expect(r.text.length).toBeGreaterThan(40);
    }
  });

  it("never asks for KV across models, and the cloud refuses it with MODEL_MISMATCH", async () => {
    const device = await PdDevice.create({ engine: deviceEngine, cloud: bigCloud.urls.ws });
    const r = await device.generate("Begin.", { maxTokens: 20, targetTpotMs: 0 });
    await device.close();
    expect(r.kv.asked).toBe(false);
    // Asked anyway (a device that ignores fingerprints): refused, request served.
    const { rawRequest } = await import("./test/raw-client.js");
    const accepted = await rawRequest(bigCloud.urls.ws!, deviceEngine.info, { kv: true });
    expect(accepted.kv).toMatchObject({ granted: false, refusal: 14 /* MODEL_MISMATCH */ });
  });
});

describe("prompt refinement", () => {
  it("prefills a shorter prompt; reports agreement of the first 32 tokens and the tokens saved", async () => {
    let agree = 0;
    let saved = 0;
    let total = 0;
    const prompts = [200, 230, 260, 290, 320].map((n, i) => `${`Question ${i}: `}${promptOf(n)}`);
    for (const p of prompts) {
      const base = await (await PdDevice.create({ engine })).generate(p, {
        maxTokens: 32,
        localOnly: true,
        targetTpotMs: 0,
      });
      // A phone-class device, several times slower at prefill than the cloud: the refined prompt
      // arrives while it still has most of its prefill ahead. The cloud here shares a loaded
      // machine, so when its refined prompt came too late to be worth it, the device is made
      // slower again (up to 32x) rather than the test depending on the machine's speed.
      let r: Report;
      let msPerToken = 4;
      do {
        const device = await PdDevice.create({
          engine,
          cloud: cloud.urls.ws,
          useKv: false,
          refineRatio: 0.5,
          emulate: { prefillMsPerToken: msPerToken },
        });
        r = await device.generate(p, { maxTokens: 32, cloudBudget: 8, targetTpotMs: 0 });
        await device.close();
        msPerToken *= 2;
        // No refinement in the report: the answer was done before the cloud's refined prompt came.
      } while (!r.refinement?.used && msPerToken <= 128);
      expect(r.refinement, "the cloud sent a refined prompt").not.toBeNull();
      expect(r.refinement?.used).toBe(true);
      expect(r.refinement!.keptTokens).toBeLessThan(r.refinement!.originalTokens);
      saved += r.refinement!.originalTokens - r.refinement!.keptTokens;
      total += r.refinement!.originalTokens;
      if (JSON.stringify(ids(r)) === JSON.stringify(base.deviceTokenIds)) agree++;
    }
    console.log(
      `refinement at ratio 0.5: first 32 tokens agree with the unrefined answer in ${agree}/${prompts.length} prompts; ` +
        `prefill tokens saved ${saved}/${total} (${((100 * saved) / total).toFixed(0)}%)`,
    );
  });
});
