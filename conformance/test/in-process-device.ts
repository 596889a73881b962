/**
 * The reference device in this process as a DeviceLauncher, one run per
 * connection: what `--exec` does, without a process per run.
 * @internal test support
 */
import { expect } from "vitest";
import { oracleOn } from "../../cli/conformance-oracle.js";
import { Engine } from "../../engine/index.js";
import { PdDevice } from "../../reference-device/index.js";
import { type DeviceLauncher, runDeviceConformance } from "../runner.js";
import type { Codec } from "../wire.js";
import { MODEL, problems } from "./reference-cloud.js";

const PROMPT = "Tell me about the quick brown fox and the lazy dog, and why the naive owls smile.";

/**
 * `answer`: the run's max_tokens, cloud budget and display rate (default 5 ms a token); the budget
 * defaults to the planner's, which counts on a cloud pacing at the display rate.
 */
export function inProcessDevice(
  engine: Engine,
  answer: { maxTokens: number; cloudBudget?: number; targetTpotMs?: number } = { maxTokens: 12 },
  /** Device options over the defaults below (e.g. a slower, chunked prefill that a KV image can still replace). */
  options: { prefillChunk?: number; emulate?: { prefillMsPerToken?: number }; prompt?: string } = {},
): DeviceLauncher {
  return {
    start(o) {
      let text = "";
      let device: PdDevice | undefined;
      const { prompt = PROMPT, ...deviceOptions } = options;
      const outcome = (async () => {
        try {
          // A device a little slower than the suite's cloud (3 ms per prompt token), so cloud tokens are used.
          device = await PdDevice.create({
            engine,
            cloud: o.url,
            client: { ca: o.caPem, codec: o.codec },
            refineRatio: 0.5,
            emulate: { prefillMsPerToken: 3 },
            ...deviceOptions,
          });
          await device.generate(prompt, { targetTpotMs: 5, ...answer, onText: (t) => (text += t) });
          return { exitCode: 0, text, stderr: "" };
        } catch (e) {
          return { exitCode: 1, text, stderr: String((e as Error)?.stack ?? e) };
        } finally {
          await device?.close();
        }
      })();
      return { outcome, stop: () => undefined };
    },
  };
}

/**
 * Every device case against the reference device in this process, listening on `listen` with `codecs`:
 * no problem, and at least 14 cases. An engine of its own: devices sharing one context would wait on each
 * other's evaluations.
 */
export async function expectDevicePasses(listen: string, codecs: Codec[]): Promise<void> {
  const engine = await Engine.load({ modelPath: MODEL, threads: 1, sequences: 4 });
  try {
    const results = await runDeviceConformance({
      role: "device",
      listen,
      codecs,
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
}
