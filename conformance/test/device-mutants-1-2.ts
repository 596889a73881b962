/**
 * A deliberately broken device for the spec 1.2 case device.refine.scorer: the
 * reference device patched to check RefinedPrompt.scorer and refuse the
 * refinement when it breaks PDD-REF-010, which PDD-REF-013 forbids.
 * @internal test support
 */
import { ErrorCode, type CloudFrame, type HelloAck } from "../../proto/index.js";
import { DeviceRun } from "../../reference-device/run.js";
import { patch, type DeviceMutant } from "./device-mutants.js";

/** What the patched step reads of a DeviceRun (private members, which the patch reaches at run time). */
interface RunMembers {
  link?: { ack?: HelloAck };
  abandonCloud(code: ErrorCode, why: string, cause: string): Promise<unknown>;
}

const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));

/** Treats a scorer of another tokenizer than the cloud model's as a violation: Cancel, and finish locally. */
export const REFUSES_ODD_SCORER: DeviceMutant = {
  name: "cancels a request whose RefinedPrompt.scorer has another tokenizer than the cloud model",
  mustFail: ["device.refine.scorer"],
  apply: () =>
    patch(
      DeviceRun.prototype,
      "check",
      (orig) =>
        function (this: RunMembers, frame: CloudFrame): unknown {
          const b = frame.body;
          const cloud = this.link?.ack?.cloudModel?.tokenizerFingerprint;
          if (b.case === "refinedPrompt" && b.value.scorer && !same(b.value.scorer.tokenizerFingerprint, cloud)) {
            void this.abandonCloud(ErrorCode.PROTOCOL_VIOLATION, "scorer of another tokenizer", "violation");
            return undefined;
          }
          return orig.call(this, frame);
        },
    ),
};
