/**
 * The suite passes against the reference device on every binding, on every
 * codec over WebSocket, in this process and as `pdd device` through --exec.
 * The four runs go at once: each listens on its own port and starts its own
 * device runs on its own engine. MessagePack over WebTransport repeats
 * MessagePack over WebSocket on another binding:
 * conformance-device-bindings.test.ts (`npm run test:matrix`).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { execLauncher } from "./launcher.js";
import { runDeviceConformance } from "./runner.js";
import { expectDevicePasses } from "./test/in-process-device.js";
import { problems } from "./test/reference-cloud.js";

describe.concurrent("conformance suite against the reference device", () => {
  it.each([
    ["ws://127.0.0.1:0", ["proto", "msgpack"]],
    ["grpc://127.0.0.1:0", ["proto"]],
    ["https://127.0.0.1:0/pdd/v1", ["proto"]],
  ] as const)("passes every case listening on %s, with the codecs %j", async (listen, codecs) => {
    await expectDevicePasses(listen, [...codecs]);
  });

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
