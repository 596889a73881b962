/**
 * The device role checks the device's own work (issue 15): with the suite's
 * own copy of the model, the KV cases pass the reference device and fail
 * every broken device in DEVICE_MUTANTS; and the manual mode (--listen
 * without --exec) binds and serves a device that connects on its own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oracleOn } from "../cli/conformance-oracle.js";
import { Engine } from "../engine/index.js";
import { runDeviceConformance } from "./runner.js";
import { DEVICE_MUTANTS } from "./test/device-mutants.js";
import { inProcessDevice } from "./test/in-process-device.js";
import { MODEL, problems } from "./test/reference-cloud.js";

let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: MODEL, threads: 1, sequences: 4 });
});
afterAll(() => engine.close());

// A prefill in chunks of 4 tokens at 10 ms a token: the suite's Accepted comes while it runs, so the
// device waits for the KV image and imports it when it passes its checks (a device done prefilling never does).
const device = () =>
  inProcessDevice(
    engine,
    { maxTokens: 12, cloudBudget: 8, targetTpotMs: 1 },
    { prefillChunk: 4, emulate: { prefillMsPerToken: 10 } },
  );

describe("device KV cases, checked against the suite's own model", () => {
  it("pass the reference device", async () => {
    const results = await runDeviceConformance({
      role: "device",
      listen: "ws://127.0.0.1:0",
      launcher: device(),
      codecs: ["proto"],
      filter: "device.kv.",
      oracle: oracleOn(engine),
    });
    expect(problems(results, [])).toEqual([]);
    expect(results.map((r) => r.id)).toEqual([
      "device.kv.bad-crc",
      "device.kv.bad-sha",
      "device.kv.unloadable",
      "device.kv.foreign-model",
      "device.kv.other-tokens",
      "device.kv.huge",
      "device.kv.stalled",
    ]);
  });

  it("are not offered without the model, never passed", async () => {
    const results = await runDeviceConformance({
      role: "device",
      listen: "ws://127.0.0.1:0",
      launcher: device(),
      codecs: ["proto"],
      filter: "device.kv.bad-crc",
    });
    expect(results.map((r) => [r.id, r.status])).toEqual([["device.kv.bad-crc", "not-offered"]]);
  });

  it.each(DEVICE_MUTANTS.map((m) => [m.name, m] as const))("fail a device that %s", async (_name, m) => {
    const undo = m.apply?.();
    try {
      const results = await runDeviceConformance({
        role: "device",
        listen: "ws://127.0.0.1:0",
        launcher: m.launcher ? m.launcher(engine) : device(),
        codecs: ["proto"],
        filter: m.mustFail.join(","),
        oracle: oracleOn(engine),
      });
      const failed = results.filter((r) => r.status === "fail").map((r) => r.id);
      expect(failed, JSON.stringify(results.map((r) => [r.id, r.status, r.details]))).toEqual(m.mustFail);
    } finally {
      undo?.();
    }
  });
});

describe("manual device mode (--listen without --exec)", () => {
  it.each(["ws://127.0.0.1:0", "grpc://127.0.0.1:0"])(
    "binds %s and checks a device that connects itself",
    async (listen) => {
      let running = true;
      const launcher = device();
      let loop: Promise<void> = Promise.resolve();
      const results = await runDeviceConformance({
        role: "device",
        listen,
        filter: "device.served,device.index.gap",
        connectMs: 20_000,
        onListening: (url) => {
          // The device under test, started by hand once per case: here, again as soon as a run ends.
          loop = (async () => {
            while (running) await launcher.start({ url, codec: "proto" }).outcome;
          })();
        },
      }).finally(() => {
        running = false;
      });
      await loop;
      expect(problems(results, [])).toEqual([]);
      expect(results.map((r) => [r.id, r.status])).toEqual([
        ["device.served", "wire-only"],
        ["device.index.gap", "wire-only"],
      ]);
    },
  );
});

describe("the --exec contract: one device process at a time", () => {
  it("starts a case's second run (its baseline) only after the first has exited", async () => {
    const inner = device();
    let live = 0;
    let most = 0;
    let runs = 0;
    const counting: typeof inner = {
      start(o) {
        runs++;
        most = Math.max(most, ++live);
        const run = inner.start(o);
        return { ...run, outcome: run.outcome.finally(() => live--) };
      },
    };
    const results = await runDeviceConformance({
      role: "device",
      listen: "ws://127.0.0.1:0",
      launcher: counting,
      codecs: ["proto"],
      filter: "device.refine.text",
    });
    expect(problems(results, [])).toEqual([]);
    expect([runs, most]).toEqual([2, 1]);
  });
});
