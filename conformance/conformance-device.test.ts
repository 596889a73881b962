/**
 * The suite passes against the reference device on every binding and codec,
 * in this process and as `pdd device` through --exec. The four runs go at
 * once: each listens on its own port and starts its own device runs on its
 * own engine.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Engine } from "../engine/index.js";
import { execLauncher } from "./launcher.js";
import { runDeviceConformance } from "./runner.js";
import { inProcessDevice } from "./test/in-process-device.js";
import { MODEL, problems } from "./test/reference-cloud.js";

describe.concurrent("conformance suite against the reference device", () => {
  it.each(["ws://127.0.0.1:0", "grpc://127.0.0.1:0", "https://127.0.0.1:0/pdd/v1"])(
    "passes every case listening on %s, with every codec",
    async (listen) => {
      // An engine of its own: devices sharing one context would wait on each other's evaluations.
      const engine = await Engine.load({ modelPath: MODEL, threads: 1, sequences: 4 });
      try {
        const results = await runDeviceConformance({
          role: "device",
          listen,
          // A fixed budget of 16, which the suite paces at 40 ms in device.takeover.in-flight: 640 ms to
          // take over, however loaded the machine.
          launcher: inProcessDevice(engine, { maxTokens: 24, cloudBudget: 16 }),
          modelFile: MODEL,
        });
        expect(problems(results, [])).toEqual([]);
        expect(results.length).toBeGreaterThanOrEqual(14);
      } finally {
        await engine.close();
      }
    },
  );

  it("drives `pdd device` through --exec and reads the answer from its stdout", async () => {
    const prompt = join(mkdtempSync(join(tmpdir(), "pdd-conf-")), "prompt.txt");
    writeFileSync(prompt, "The quick brown fox jumps over the lazy dog. ".repeat(60));
    const bin = join(import.meta.dirname, "..", "bin", "pdd.js");
    // A fixed budget of 40 tokens, which the suite paces at 40 ms in device.takeover.in-flight: 1.6 s to
    // prefill the prompt and take over, however loaded the machine (the planner's budget counts on a
    // cloud pacing at the display rate).
    const launcher = execLauncher(
      `node ${bin} device --cloud {url} --codec {codec} --prompt-file ${prompt} --max-tokens 48 --budget 40 --tpot-ms 5 --threads 1`,
    );
    const results = await runDeviceConformance({
      role: "device",
      listen: "ws://127.0.0.1:0",
      launcher,
      codecs: ["proto"],
      filter: "device.served,device.takeover,device.connection.lost",
    });
    expect(problems(results, [])).toEqual([]);
    expect(results.map((r) => r.id)).toEqual(["device.served", "device.takeover.in-flight", "device.connection.lost"]);
  });
});
