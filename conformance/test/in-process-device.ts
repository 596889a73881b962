/**
 * The reference device in this process as a DeviceLauncher, one run per
 * connection: what `--exec` does, without a process per run.
 * @internal test support
 */
import type { Engine } from "../../engine/index.js";
import { PdDevice } from "../../reference-device/index.js";
import type { DeviceLauncher } from "../runner.js";

export function inProcessDevice(
  engine: Engine,
  prompt = "Tell me about the quick brown fox and the lazy dog, and why the naive owls smile.",
): DeviceLauncher {
  return {
    start(o) {
      let text = "";
      let device: PdDevice | undefined;
      const outcome = (async () => {
        try {
          // A device a little slower than the suite's cloud (3 ms per prompt token), so cloud tokens are used.
          device = await PdDevice.create({
            engine,
            cloud: o.url,
            client: { ca: o.caPem, codec: o.codec },
            refineRatio: 0.5,
            emulate: { prefillMsPerToken: 3 },
          });
          await device.generate(prompt, { maxTokens: 12, targetTpotMs: 5, onText: (t) => (text += t) });
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
