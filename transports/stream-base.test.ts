/**
 * The send side every binding shares, against a peer that never reads: a
 * sender blocked on the high-water mark learns that the connection closed
 * (it rejects, instead of going on as if its frame had left), and a peer
 * that takes no byte for the write deadline loses the connection (issue 13,
 * items 1 and 3).
 */
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema, ErrorCode, type CloudFrame, type DeviceFrame } from "../proto/index.js";
import { StreamBase } from "./stream-base.js";

/** A binding whose writes complete only when the test says so. */
class StuckStream extends StreamBase<DeviceFrame, CloudFrame> {
  readonly writes: (() => void)[] = [];
  aborted = false;
  constructor(writeDeadlineMs = 10_000) {
    super({
      transport: "memory",
      codec: "proto",
      inSchema: DeviceFrameSchema,
      outSchema: CloudFrameSchema,
      highWaterMark: 64,
      writeDeadlineMs,
    });
  }
  protected writeFrame(): Promise<void> {
    return new Promise((r) => this.writes.push(r));
  }
  protected async closeTransport(): Promise<void> {}
  protected abortTransport(): void {
    this.aborted = true;
  }
}

const pong = (n: number) => create(CloudFrameSchema, { body: { case: "pong", value: { nonce: BigInt(n) } } });

/** Sends until `bytes` are buffered (past the 64-byte mark: the last sends block); returns the first blocked send. */
function blockedSend(s: StuckStream, bytes = 64): Promise<void> {
  let first: Promise<void> | undefined;
  for (let i = 0; s.bufferedAmount < bytes; i++) {
    const p = s.send(pong(i));
    if (s.bufferedAmount >= 64) first ??= p;
  }
  return first!;
}

afterEach(() => vi.useRealTimers());

describe("a sender facing a peer that never reads", () => {
  it("rejects with ERR_CLOSED when the connection closes while it waits", async () => {
    const s = new StuckStream();
    const blocked = blockedSend(s);
    s.abort("the peer vanished");
    await expect(blocked).rejects.toMatchObject({ local: "ERR_CLOSED" });
  });

  it("ends the connection with TIMEOUT once no byte has left for the write deadline", async () => {
    vi.useFakeTimers();
    const s = new StuckStream(1_000);
    const blocked = blockedSend(s);
    blocked.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(999);
    expect(s.isClosed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.aborted).toBe(true);
    expect(await s.closed).toMatchObject({ code: ErrorCode.TIMEOUT, abrupt: true });
    await expect(blocked).rejects.toMatchObject({ local: "ERR_CLOSED" });
  });

  it("keeps a slow reader that takes bytes now and then: each write that completes restarts the deadline", async () => {
    vi.useFakeTimers();
    const s = new StuckStream(1_000);
    const blocked = blockedSend(s, 256);
    blocked.catch(() => undefined);
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(900);
      s.writes.shift()!(); // one frame left; still over the mark
      await vi.advanceTimersByTimeAsync(0);
      expect(s.bufferedAmount).toBeGreaterThanOrEqual(64);
    }
    await vi.advanceTimersByTimeAsync(900);
    expect(s.isClosed).toBe(false); // 5.4 s blocked in all, never 1 s without progress
    for (const w of s.writes.splice(0)) w();
    await expect(blocked).resolves.toBeUndefined();
  });
});
