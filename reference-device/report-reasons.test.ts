/**
 * What the device's report says about the choices it did not make (issue 16
 * item 6/7): how the cloud's model relates to its own (cloudModel), why a
 * refinement it asked for was not used (refinementReason), and where the
 * answer was cut at the model's context (stoppedAtContext, PROMPT_TOO_LONG).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOUD_GPU, ensureDefaultModel, INSTANT, loadEngine, PHONE, SimEngine } from "../engine/index.js";
import { ErrorCode, PddError } from "../proto/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { whyNotRefined } from "./report.js";

const fast = (p: typeof PHONE) => ({
  ...p,
  prefillTokPerS: 20 * p.prefillTokPerS,
  decodeTokPerS: 20 * p.decodeTokPerS,
});
const prompt = "How do a phone and a cloud share one answer? ".repeat(10);

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startCloud(
    { logLevel: "silent", decodePace: 0, listen: { ws: "127.0.0.1:0" } },
    { engine: new SimEngine({ profile: fast(CLOUD_GPU), sequences: 4 }) },
  );
});
afterAll(() => cloud.close({ drainSeconds: 0 }));

async function withDevice<T>(o: Parameters<typeof PdDevice.create>[0], f: (d: PdDevice) => Promise<T>): Promise<T> {
  const device = await PdDevice.create({ cloud: cloud.urls.ws, targetTpotMs: 3, ...o });
  try {
    return await f(device);
  } finally {
    await device.close();
  }
}

describe("the device's report", () => {
  it.each([
    ["same", () => new SimEngine({ profile: fast(CLOUD_GPU) })],
    ["same-tokenizer", () => new SimEngine({ profile: fast(PHONE) })],
    ["different", () => loadEngine({ modelPath: ensureDefaultModel("tiny"), threads: 1 })],
  ] as const)("says the cloud's model is %s", async (relation, engine) => {
    const r = await withDevice({ engine: await engine() }, (d) => d.generate(prompt, { maxTokens: 8 }));
    expect(r.cloudModel).toBe(relation);
  });

  it("says cloudModel null when no cloud was used", async () => {
    const r = await withDevice({ engine: new SimEngine({ profile: INSTANT }) }, (d) =>
      d.generate(prompt, { maxTokens: 4, localOnly: true }),
    );
    expect(r.cloudModel).toBeNull();
    expect(r.refinementReason).toBeUndefined();
  });

  it("says why a refinement it was told to ask for was not used: KV was asked instead, the cloud runs its model", async () => {
    const r = await withDevice({ engine: new SimEngine({ profile: fast(CLOUD_GPU) }), refineRatio: 0.5 }, (d) =>
      // A fixed budget: no planner, so KV is asked whenever the models match.
      d.generate(prompt, { maxTokens: 8, cloudBudget: 4 }),
    );
    expect(r.cloudModel).toBe("same");
    expect(r.refinement?.used ?? false).toBe(false);
    expect(r.refinementReason).toBe("not asked: KV was asked instead (the cloud runs this model)");
  });

  it("has no refinementReason when the refinement was used", async () => {
    const r = await withDevice(
      { engine: new SimEngine({ profile: fast(PHONE) }), refineRatio: 0.5, useKv: false },
      (d) => d.generate(prompt.repeat(4), { maxTokens: 120 }),
    );
    // The device needs ~0.5 s of (simulated) prefill; the cloud's refined prompt comes within a loopback round trip.
    expect(r.refinement?.used).toBe(true);
    expect(r.refinementReason).toBeUndefined();
  });
});

describe("whyNotRefined", () => {
  const used = { used: true, originalTokens: 10, keptTokens: 5 };
  const unused = { used: false, originalTokens: 10, keptTokens: 5 };
  it.each([
    [[false, false, null, false], undefined],
    [[true, true, used, false], undefined],
    [[true, false, null, false], /KV was asked instead/],
    [[true, true, null, true], /the cloud failed before/],
    [[true, true, null, false], /sent no refined prompt before the device had prefilled/],
    [[true, true, unused, false], /came too late/],
  ] as const)("%j → %s", (args, why) => {
    const got = whyNotRefined(...(args as unknown as Parameters<typeof whyNotRefined>));
    if (why === undefined) expect(got).toBeUndefined();
    else expect(got).toMatch(why);
  });
});

describe("the model's context", () => {
  const engine = () => new SimEngine({ profile: INSTANT, contextSize: 64 });

  it("stops the answer at the context and says so (stoppedAtContext), instead of running past it", async () => {
    const e = engine();
    const text = "a".repeat(40);
    const room = e.contextSize - e.tokenize(text).length;
    const r = await withDevice({ engine: e }, (d) => d.generate(text, { maxTokens: 100, localOnly: true }));
    expect(r.deviceTokens).toBe(room);
    expect(r.stoppedAtContext).toBe(true);
  });

  it("does not say stoppedAtContext when the answer fits", async () => {
    const r = await withDevice({ engine: engine() }, (d) =>
      d.generate("a".repeat(10), { maxTokens: 5, localOnly: true }),
    );
    expect(r.deviceTokens).toBe(5);
    expect(r.stoppedAtContext).toBeUndefined();
  });

  it("refuses a prompt the context cannot hold with PROMPT_TOO_LONG", async () => {
    const err = await withDevice({ engine: engine() }, (d) => d.generate("a".repeat(64), { localOnly: true })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).code).toBe(ErrorCode.PROMPT_TOO_LONG);
    expect((err as PddError).message).toMatch(/the prompt is \d+ tokens; the model's context holds 64/);
  });
});
