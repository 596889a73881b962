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
import { oracleOn } from "../cli/conformance-oracle.js";
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
          // A fixed budget of 64, which the suite paces at 40 ms in device.takeover.in-flight: 2.5 s to
          // take over, however loaded the machine. The answer is shown at 1 ms a token, so its length
          // costs little.
          launcher: inProcessDevice(engine, { maxTokens: 72, cloudBudget: 64, targetTpotMs: 1 }),
          modelFile: MODEL,
          oracle: oracleOn(engine),
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
    writeFileSync(prompt, "The quick brown fox jumps over the lazy dog. ".repeat(30));
    const bin = join(import.meta.dirname, "..", "bin", "pdd.js");
    // A fixed budget of 128 tokens, which the suite paces at 40 ms in device.takeover.in-flight: 5 s to
    // prefill the 300-token prompt and take over, however loaded the machine (the planner's budget counts on
    // a cloud pacing at the display rate; 64 tokens and a 600-token prompt ran out beside two CPU hogs).
    // The answer is shown at 1 ms a token.
    const launcher = execLauncher(
      `node ${bin} device --cloud {url} --codec {codec} --prompt-file ${prompt} --max-tokens 136 --budget 128 --tpot-ms 1 --threads 1`,
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
