/**
 * The reference peers on simulated engines (the engine the trace replay and
 * the device soak use): P/D over each binding shows exactly the device's own
 * greedy text, and the planner's refinement choice reaches the wire.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOUD_GPU, PHONE, SimEngine } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";

// 20× the published rates: the same proportions, a run in well under a second.
const phone = { ...PHONE, prefillTokPerS: 20 * PHONE.prefillTokPerS, decodeTokPerS: 20 * PHONE.decodeTokPerS };
const gpu = {
  ...CLOUD_GPU,
  prefillTokPerS: 20 * CLOUD_GPU.prefillTokPerS,
  decodeTokPerS: 20 * CLOUD_GPU.decodeTokPerS,
};
const prompt = "How do a phone and a cloud share one answer? ".repeat(40);

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startCloud(
    {
      logLevel: "silent",
      decodePace: 0,
      listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
    },
    { engine: new SimEngine({ profile: gpu, sequences: 4 }) },
  );
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("reference peers on simulated engines", () => {
  it.each(["ws", "grpc", "webtransport"] as const)(
    "over %s, P/D shows exactly the text the device computes alone",
    async (t) => {
      const device = await PdDevice.create({
        engine: new SimEngine({ profile: phone }),
        cloud: cloud.urls[t],
        client: { ca: cloud.certificate.cert },
        targetTpotMs: 3,
      });
      try {
        // 300 tokens: longer than any takeover point the planner can reach at these rates (≤ ~170).
        const alone = await device.generate(prompt, { maxTokens: 300, localOnly: true });
        const pd = await device.generate(prompt, { maxTokens: 300 });
        expect(pd.mode).toBe("pd");
        expect(pd.cloudTokens).toBeGreaterThan(0);
        expect(pd.deviceTokens).toBeGreaterThan(0); // a takeover happened
        expect(pd.text).toBe(alone.text);
        expect(pd.text).toHaveLength(300);
      } finally {
        await device.close();
      }
    },
  );

  it("with a refinement floor, the planner asks for a refined prompt and the device prefills it", async () => {
    const device = await PdDevice.create({
      engine: new SimEngine({ profile: phone }),
      cloud: cloud.urls.ws,
      refineMinRatio: 0.5,
      targetTpotMs: 3,
    });
    try {
      await device.generate(prompt, { maxTokens: 40 }); // learns the cloud's rates from End.usage and FirstToken
      expect(device.observed.cloudDecodeTokPerS).toBeGreaterThan(0);
      const promptTokens = device.engine.tokenize(prompt).length;
      // 400 tokens: the device's catch-up ends well inside the answer with or without refinement, so the
      // refined prompt's earlier takeover is cheaper for the cloud (at 120 both ended past it under load).
      const p = device.planFor(promptTokens, 3, 400, 0, 0.5);
      expect(p.chosen.ratio).toBeLessThan(1);
      const r = await device.generate(prompt, { maxTokens: 400 });
      expect(r.refinement?.used).toBe(true);
      expect(r.refinement!.keptTokens).toBeLessThan(r.refinement!.originalTokens);
      expect(r.text).toHaveLength(400);
    } finally {
      await device.close();
    }
  });

  // Issue 18: the cloud sends ahead of the display, and the device caught up over every token it had
  // received, so the takeover came at the whole budget (k = 160 of 160 in the demo).
  it("the device takes over near what is shown, not after every token the cloud sent ahead", async () => {
    const device = await PdDevice.create({
      engine: new SimEngine({ profile: phone }),
      cloud: cloud.urls.ws,
      targetTpotMs: 100,
    });
    try {
      // The cloud (unpaced) sends its 30 tokens at once; the display shows one per 100 ms meanwhile.
      const r = await device.generate(prompt, { maxTokens: 40, cloudBudget: 30 });
      expect(r.mode).toBe("pd");
      expect(r.deviceTokens).toBeGreaterThan(0);
      expect(r.takeoverIndex).toBeLessThan(15);
      expect(r.cloudTokens + r.deviceTokens).toBe(40);
    } finally {
      await device.close();
    }
  });

  // Issue 16: with a long prompt on a phone (seconds of prefill) the device went on prefilling after the
  // cloud had sent every token, and only then returned (and freed its sequence).
  it("when the cloud's tokens are the whole answer, the device stops its prefill at once", async () => {
    const device = await PdDevice.create({
      engine: new SimEngine({ profile: PHONE }),
      cloud: cloud.urls.ws,
      targetTpotMs: 1,
    });
    try {
      const long = "One long prompt for a slow phone. ".repeat(400);
      const promptTokens = device.engine.tokenize(long).length;
      const r = await device.generate(long, { maxTokens: 16, cloudBudget: 16 });
      expect(r.mode).toBe("pd");
      expect(r.cloudTokens).toBe(16);
      expect(r.deviceTokens).toBe(0);
      expect(r.devicePrefilledTokens).toBeLessThan(promptTokens);
      expect(device.engine.busy).toBe(0);
    } finally {
      await device.close();
    }
  });

  it("without a floor, the planner never refines", async () => {
    const device = await PdDevice.create({
      engine: new SimEngine({ profile: phone }),
      cloud: cloud.urls.ws,
      targetTpotMs: 3,
    });
    try {
      const r = await device.generate(prompt, { maxTokens: 40 });
      expect(r.refinement).toBeNull();
    } finally {
      await device.close();
    }
  });
});
