/**
 * RefinedPrompt.scorer (spec 1.2, §8.5) between the reference peers: a 1.2
 * device reports the scorer a 1.2 cloud names, and with a cloud that speaks
 * 1.1 at most the two negotiate 1.1 and the run is the same, without one.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import type { Report } from "./run.js";
import { promptOf } from "./test/prompt.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-scorer-"));
const model = join(dir, "tiny.gguf");
let engine: Engine;
let cloud12: CloudPeer;
let cloud11: CloudPeer;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  engine = await Engine.load({ modelPath: model, sequences: 2, threads: 1 });
  const start = (protocolMinor?: number) =>
    startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } }, { protocolMinor });
  [cloud12, cloud11] = await Promise.all([start(), start(1)]);
});
afterAll(async () => {
  await Promise.all([cloud12, cloud11].map((c) => c.close({ drainSeconds: 0 })));
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A refined run: a device slow enough at prefill (made slower while the cloud's refined prompt comes after
 * its prefill, as in pd.test.ts) that the report has the refinement.
 */
async function refinedRun(cloud: CloudPeer): Promise<Report> {
  const prompt = promptOf(engine, 120);
  let r: Report;
  let msPerToken = 2;
  do {
    const device = await PdDevice.create({
      engine,
      cloud: cloud.urls.ws,
      useKv: false,
      refineRatio: 0.5,
      emulate: { prefillMsPerToken: msPerToken },
    });
    r = await device.generate(prompt, { maxTokens: 8, cloudBudget: 4, targetTpotMs: 0 });
    await device.close();
    msPerToken *= 2;
  } while (!r.refinement && msPerToken <= 128);
  return r;
}

describe("RefinedPrompt.scorer between the reference peers", () => {
  it("a 1.2 device reports the served model as the scorer a 1.2 cloud names (PDD-REF-014)", async () => {
    const r = await refinedRun(cloud12);
    expect(r.mode).toBe("pd");
    expect(r.refinement, "the cloud sent a refined prompt").not.toBeNull();
    expect(r.refinement!.scorer).toEqual({
      name: engine.info.name,
      modelFingerprint: Buffer.from(engine.info.modelFingerprint).toString("hex"),
      tokenizerFingerprint: Buffer.from(engine.info.tokenizerFingerprint).toString("hex"),
      servedModel: true,
    });
  });

  it("a 1.2 device and a 1.1 cloud negotiate 1.1: the refined run completes in P/D, with no scorer (PDD-REF-012)", async () => {
    const r = await refinedRun(cloud11);
    expect(r.mode).toBe("pd");
    expect(r.cloudTokens).toBeGreaterThan(0);
    expect(r.refinement, "the cloud sent a refined prompt").not.toBeNull();
    expect(r.refinement).not.toHaveProperty("scorer");
  });
});
