/**
 * Interop, with llama.cpp on both sides: the P/D-Device answer equals the
 * device-only answer token for token, on every transport, with and without
 * KV, for short and long prompts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { promptOf } from "./test/prompt.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-interop-"));
const model = join(dir, "tiny.gguf");
let cloud: CloudPeer;
let engine: Engine;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1 });
  cloud = await startCloud({
    model,
    threads: 1,
    logLevel: "silent",
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const ids = (r: { cloudTokenIds: number[]; deviceTokenIds: number[] }) => [...r.cloudTokenIds, ...r.deviceTokenIds];
const transports = ["ws", "grpc", "webtransport"] as const;

describe("interop: P/D-Device equals --local-only, token for token", () => {
  const cases = transports.flatMap((t) =>
    [16, 400, 1500].flatMap((n) => [false, true].map((kv) => [t, n, kv] as const)),
  );
  // The device's prefill takes at least 300 ms (0.2 ms a token for long prompts), so that the cloud's
  // Accepted, which says whether KV is granted, reaches it first on a loaded machine too: a 16-token
  // prompt at 0.2 ms was prefilled (and the request over) before it came.
  const emulateFor = (n: number) => ({ prefillMsPerToken: Math.max(0.2, 300 / n), decodeMsPerToken: 0 });
  // The device-only answer depends on the prompt alone: computed once per prompt length.
  const baselines = new Map<number, ReturnType<PdDevice["generate"]>>();
  const baselineOf = (n: number) => {
    let b = baselines.get(n);
    if (!b) {
      b = PdDevice.create({ engine, emulate: emulateFor(n) }).then((local) =>
        local.generate(promptOf(engine, n), { maxTokens: 60, localOnly: true, targetTpotMs: 0 }),
      );
      baselines.set(n, b);
    }
    return b;
  };
  it.each(cases)("over %s, prompt of ~%i tokens, KV %s", async (transport, n, kv) => {
    const prompt = promptOf(engine, n);
    const baseline = await baselineOf(n);
    const device = await PdDevice.create({
      engine,
      emulate: emulateFor(n),
      cloud: cloud.urls[transport],
      client: { ca: cloud.certificate.cert },
      useKv: kv,
    });
    const r = await device.generate(prompt, { maxTokens: 60, cloudBudget: 24, targetTpotMs: 0 });
    await device.close();
    expect(r.mode).toBe("pd");
    expect(ids(r)).toEqual(baseline.deviceTokenIds);
    expect(r.text).toBe(baseline.text);
    expect(r.kv.asked).toBe(kv);
    if (kv) expect(r.kv.granted).toBe(true);
  });
});
