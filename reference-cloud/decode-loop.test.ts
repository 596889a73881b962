/**
 * An engine whose decoding stops short of the budget, without end of
 * generation and without a halt, failed: the request ends with Error, then
 * End ERROR. It must never end with the budget's own reason: End MAX_TOKENS
 * tells the device the answer is complete (PDD-IDX-004, PDD-IDX-008), and a
 * llama-server backend killed before its first token made the device show an
 * empty answer as complete (issue 19).
 */
import { create } from "@bufbuild/protobuf";
import { afterEach, expect, it } from "vitest";
import type { InferenceSlot } from "../engine/index.js";
import { DeviceFrameSchema, EndReason, ErrorCode, type CloudFrame } from "../proto/index.js";
import { memoryCloud, type MemoryCloud } from "./test/memory-cloud.js";

let cloud: MemoryCloud | undefined;
afterEach(() => cloud?.device.abort());

/** Every sequence the engine hands out stops decoding after `n` tokens, as a stream that broke off silently. */
function stopAfter(c: MemoryCloud, n: number): void {
  const acquire = c.engine.acquire.bind(c.engine);
  c.engine.acquire = async () => {
    const slot: InferenceSlot = await acquire();
    const generate = slot.generate.bind(slot);
    slot.generate = async function* (sampling, maxTokens) {
      let left = n;
      for await (const t of generate(sampling, maxTokens)) {
        if (left-- === 0) return;
        yield t;
      }
    };
    return slot;
  };
}

const of =
  (kind: CloudFrame["body"]["case"]) =>
  (f: CloudFrame): boolean =>
    f.body.case === kind;

it.each([0, 3])(
  "an engine that stops after %i of 16 tokens: Error INTERNAL, then End ERROR, not MAX_TOKENS",
  async (n) => {
    cloud = await memoryCloud({ decodePace: 0 });
    stopAfter(cloud, n);
    await cloud.device.send(
      create(DeviceFrameSchema, {
        body: {
          case: "prefillRequest",
          value: {
            requestId: 1,
            prompt: { case: "text", value: "The quick brown fox jumps over the lazy dog." },
            cloudTokenBudget: 16,
            maxTokens: 16,
          },
        },
      }),
    );
    const end = await cloud.frame(of("end"));
    expect(end.body.case === "end" && end.body.value).toMatchObject({ reason: EndReason.ERROR, tokenCount: n });
    const error = await cloud.frame(of("error")); // came before End
    expect(error.body.case === "error" && error.body.value).toMatchObject({ code: ErrorCode.INTERNAL });
    expect(cloud.engine.busy).toBe(0);
  },
);
