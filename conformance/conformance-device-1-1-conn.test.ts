/**
 * The device cases of spec 1.1 for the connection, gRPC and timers
 * (device-1-1-conn-cases.ts): they pass against the reference device and
 * fail against a device broken on their rule (test/mutants-1-1-conn.ts).
 * device.hello.timeout waits its 10 s by design: the rule is a time bound.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oracleOn } from "../cli/conformance-oracle.js";
import { Engine } from "../engine/index.js";
import { DEVICE_1_1_CONN_CASES } from "./device-1-1-conn-cases.js";
import { runDeviceConformance } from "./runner.js";
import { inProcessDevice } from "./test/in-process-device.js";
import { DEVICE_PATCH_MUTANTS_1_1_CONN } from "./test/mutants-1-1-conn.js";
import { MODEL, problems } from "./test/reference-cloud.js";

let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: MODEL, threads: 1, sequences: 4 });
});
afterAll(() => engine.close());

const ids = DEVICE_1_1_CONN_CASES.map((c) => c.id);
const LISTEN = { ws: "ws://127.0.0.1:0", grpc: "grpc://127.0.0.1:0" } as const;
const run = (listen: string, filter: string) =>
  runDeviceConformance({
    role: "device",
    listen,
    // As conformance-device.test.ts: a budget of 64 paced at 40 ms leaves 2.5 s to take over.
    launcher: inProcessDevice(engine, { maxTokens: 72, cloudBudget: 64, targetTpotMs: 1 }),
    codecs: ["proto"],
    filter,
    oracle: oracleOn(engine),
  });

describe("the spec 1.1 device connection cases", () => {
  it.each(Object.entries(LISTEN))("pass against the reference device over %s", async (_k, listen) => {
    const results = (await run(listen, ids.join(","))).filter((r) => ids.includes(r.id));
    expect(results.length).toBeGreaterThan(0);
    expect(problems(results, [])).toEqual([]);
  });

  it.each(DEVICE_PATCH_MUTANTS_1_1_CONN.map((m) => [m.name, m] as const))("fail a device that %s", async (_n, m) => {
    const undo = m.apply();
    try {
      const results = await run(LISTEN[m.listen], m.mustFail);
      expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
    } finally {
      undo();
    }
  });
});
