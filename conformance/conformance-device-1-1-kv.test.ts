/**
 * The device's KV bounds (device-1-1-kv-cases.ts) against the reference
 * device speaking 1.1, where KvAbort shows them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine/index.js";
import { runDeviceConformance } from "./runner.js";
import { inProcessDevice } from "./test/in-process-device.js";
import { MODEL, problems } from "./test/reference-cloud.js";

let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: MODEL, threads: 1, sequences: 4 });
});
afterAll(async () => {
  await engine?.close();
});

const run = (filter: string) =>
  runDeviceConformance({
    role: "device",
    listen: "ws://127.0.0.1:0",
    codecs: ["proto"],
    // A prefill in chunks of 4 tokens at 10 ms a token: Accepted comes while it runs, so the device waits
    // for the image (a device done prefilling never does), which is what device.kv.stalled needs.
    launcher: inProcessDevice(
      engine,
      { maxTokens: 12, cloudBudget: 4, targetTpotMs: 1 },
      { prefillChunk: 4, emulate: { prefillMsPerToken: 10 } },
    ),
    filter,
  });

describe("a device at 1.1 bounds a KV transfer", () => {
  it("refuses an image too big for it, and gives up a stalled one (device.kv.huge, device.kv.stalled)", async () => {
    const results = await run("device.kv.huge,device.kv.stalled");
    expect(results.map((r) => r.id).sort()).toEqual(["device.kv.huge", "device.kv.stalled"]);
    expect(problems(results, [])).toEqual([]);
    // At 1.1 or later (1.2 since its release), so that the KvAbort checks ran.
    const atLeast11 = /"version":\{"major":1,"minor":[1-9]\d*\}/;
    expect(results.map((r) => r.log.find((l) => l.includes("→ helloAck")))).toEqual([
      expect.stringMatching(atLeast11),
      expect.stringMatching(atLeast11),
    ]);
  });
});
