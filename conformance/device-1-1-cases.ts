/**
 * Device cases for the rules spec 1.1 added (issue 14): the suite plays the
 * cloud. Each fails on the 1.0 reference device's behaviour.
 */
import type { Case } from "./case.js";
import { greet } from "./device-cases.js";
import { CheckFailure, field, isClose, type Probe } from "./probe.js";
import { render, type Frame } from "./wire.js";

/** Whether a binding's close code carries PDD code `n` (§13.3); gRPC: the device cannot set a status. */
function closeCarries(transport: Probe["transport"], close: number, n: number): boolean {
  if (transport === "websocket") return close === 4000 + n;
  if (transport === "webtransport") return close === n;
  return true; // gRPC: a half-close or a cancel (PDD-CONN-023)
}

/**
 * The device reports a connection error it detected: DeviceFrame.error with
 * request_id 0 and `code`, then a close carrying it (PDD-CONN-023).
 */
async function expectDeviceError(p: Probe, code: string, n: number, rule: string): Promise<void> {
  let error: Frame | undefined;
  for (;;) {
    const r = await p.recv();
    if (r === undefined) {
      if (error) return; // the Error came; the close may take longer
      throw new CheckFailure(`DeviceFrame.error ${code} (${rule}, PDD-CONN-023)`, `nothing within ${p.waitMs} ms`);
    }
    if (isClose(r)) {
      expectThat(error !== undefined, `DeviceFrame.error ${code} before the close (${rule}, PDD-CONN-023)`, "a close");
      expectThat(
        closeCarries(p.transport, r.closed.code, n),
        `a close carrying ${code} (PDD-CONN-023, §13.3)`,
        `close ${r.closed.code} ${r.closed.reason}`,
      );
      return;
    }
    const f = r as Frame;
    if (f.body !== "error") continue; // frames it sent before it read the HelloAck
    expectThat(
      field(f, "error.requestId") === 0 && field(f, "error.code") === code && field(f, "error.retryable") !== true,
      `DeviceFrame.error{0, ${code}}, not retryable (${rule}, PDD-CONN-023, PDD-MSG-015)`,
      render(f),
    );
    error = f;
  }
}

function expectThat(ok: boolean, expected: string, observed: string): void {
  if (!ok) throw new CheckFailure(expected, observed);
}

export const DEVICE_1_1_CASES: Case[] = [
  {
    id: "device.hello-ack.limits-minimum",
    title: "reports a HelloAck whose max_frame_bytes is below 64 KiB as connection error INVALID_ARGUMENT",
    role: "device",
    requirements: ["PDD-CONN-029", "PDD-CONN-023", "PDD-MSG-012", "PDD-MSG-015"],
    async run(p) {
      await greet(p, { limits: { maxFrameBytes: 200 } });
      await expectDeviceError(p, "ERROR_CODE_INVALID_ARGUMENT", 9, "PDD-CONN-029, PDD-MSG-012");
    },
  },
];
