/**
 * The emulated slower device (DeviceOptions.emulate): "add" puts the per-token
 * milliseconds on top of this machine's own time, "pad" makes each step take
 * that much in all. Checked through the calibrated rates, which the planner uses.
 */
import { describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { PdDevice } from "./device.js";

// A device that spends 0.5 ms per prefill token and 2 ms per decode step of its own.
const own = { ...INSTANT, prefillTokPerS: 2000, decodeTokPerS: 500 };

describe("device emulation", () => {
  it("pad: the calibrated rate is the emulated one, not this machine's time on top", async () => {
    const device = await PdDevice.create({
      engine: new SimEngine({ profile: own }),
      emulate: { prefillMsPerToken: 5, decodeMsPerToken: 40, mode: "pad" },
    });
    await device.close();
    // The engine's own time (0.5 and 2 ms, or more on a loaded machine) is inside the 5 and 40 ms.
    expect(device.rates.prefillMsPerToken).toBe(5);
    expect(device.rates.decodeMsPerToken).toBe(40);
  });

  it("add: the emulated milliseconds come on top of this machine's own", async () => {
    const device = await PdDevice.create({
      engine: new SimEngine({ profile: own }),
      emulate: { prefillMsPerToken: 5, decodeMsPerToken: 40 },
    });
    await device.close();
    expect(device.rates.prefillMsPerToken).toBeGreaterThan(5);
    expect(device.rates.decodeMsPerToken).toBeGreaterThan(40);
  });
});
