/**
 * The reference device in this process as a DeviceLauncher, one run per
 * connection: what `--exec` does, without a process per run.
 * @internal test support
 */
import type { Engine } from "../../engine/index.js";
import { PdDevice } from "../../reference-device/index.js";
import type { DeviceLauncher } from "../runner.js";

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
