/**
 * The metrics count admission and engine occupancy apart (issue 13, item 1):
 * `pdd_sequences_active` is the admission slots held, and
 * `pdd_engine_sequences_busy` the engine sequences that hold a request's
 * state. They differ while an admitted request waits for the engine to give
 * it a sequence; a gauge fed from the other count would read the same in both.
 */
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import type { InferenceSlot } from "../engine/index.js";
import { DeviceFrameSchema, EndReason, ErrorCode, type CloudFrame } from "../proto/index.js";
import { memoryCloud, type MemoryCloud } from "./test/memory-cloud.js";

let cloud: MemoryCloud | undefined;
afterEach(() => cloud?.device.abort());

const gauge = async (c: MemoryCloud, g: "activeSequences" | "engineBusy") =>
  (await c.ctx.metrics[g].get()).values[0]?.value;

/** The engine's acquire, held until `open()`: `called` resolves once a request asks for a sequence. */
function gateAcquire(c: MemoryCloud): { called: Promise<void>; open: () => void } {
  const acquire = c.engine.acquire.bind(c.engine);
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let called!: () => void;
  const calledP = new Promise<void>((r) => (called = r));
  c.engine.acquire = async (): Promise<InferenceSlot> => {
    called();
    await gate;
    return acquire();
  };
  return { called: calledP, open };
}

describe("pdd_engine_sequences_busy", () => {
  it("counts engine occupancy apart from admission: 0 while admitted and waiting for the engine, 1 while it holds a sequence, 0 after End", async () => {
    const c = await memoryCloud({ decodePace: 0.001 }); // 17 minutes a token: the request holds its sequence
    cloud = c;
    const gated = gateAcquire(c);
    const of = (kind: CloudFrame["body"]["case"]) => (f: CloudFrame) =>
      f.body.case === kind && (f.body.value as { requestId?: number }).requestId === 1;
    await c.device.send(
      create(DeviceFrameSchema, {
        body: {
          case: "prefillRequest",
          value: {
            requestId: 1,
            prompt: { case: "text", value: "The quick brown fox." },
            cloudTokenBudget: 16,
            targetTpotUs: 1_000_000,
          },
        },
      }),
    );
    await gated.called; // admitted: its slot is held, the engine has not given it a sequence yet
    expect(await gauge(c, "activeSequences")).toBe(1);
    expect(await gauge(c, "engineBusy")).toBe(0);

    gated.open();
    await c.frame(of("firstToken"));
    expect(await gauge(c, "activeSequences")).toBe(1);
    expect(await gauge(c, "engineBusy")).toBe(1);

    await c.device.send(
      create(DeviceFrameSchema, { body: { case: "cancel", value: { requestId: 1, code: ErrorCode.CANCELLED } } }),
    );
    const end = await c.frame(of("end"));
    expect(end.body.case === "end" && end.body.value.reason).toBe(EndReason.CANCELLED);
    expect(await gauge(c, "activeSequences")).toBe(0);
    expect(await gauge(c, "engineBusy")).toBe(0);
  });
});
