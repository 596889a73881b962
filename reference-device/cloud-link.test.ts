/**
 * The device's handshake timer (PDD-CONN-022), with fake timers: no HelloAck
 * for 10 s is connection error TIMEOUT, reported to the cloud; not a moment
 * sooner.
 */
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ErrorCode, ModelIdentitySchema, type DeviceFrame } from "../proto/index.js";
import { createLinkedPair } from "../transports/memory/linked-pair.js";
import { CloudLink } from "./cloud-link.js";

afterEach(() => vi.useRealTimers());

describe("the device's handshake timer", () => {
  it("reports TIMEOUT 10 s after the Hello when no HelloAck came, and not before", async () => {
    vi.useFakeTimers();
    const { device, cloud } = createLinkedPair();
    const seen: DeviceFrame[] = [];
    void (async () => {
      for await (const f of cloud) seen.push(f);
    })();
    const link = await CloudLink.over(device, create(ModelIdentitySchema, {}));
    const ack = link.helloAck().then(
      () => "ack",
      (e: { code: ErrorCode }) => e.code,
    );
    await vi.advanceTimersByTimeAsync(9_999);
    expect(seen.map((f) => f.body.case)).toEqual(["hello"]);
    expect(link.live).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(await ack).toBe(ErrorCode.TIMEOUT);
    await vi.advanceTimersByTimeAsync(10);
    const last = seen[seen.length - 1]!;
    expect(last.body.case).toBe("error");
    expect(last.body.case === "error" && last.body.value.code).toBe(ErrorCode.TIMEOUT);
    expect((await cloud.closed).code).toBe(ErrorCode.TIMEOUT);
  });
});
