/**
 * The receive queue bounds what a peer that sends faster than it is served
 * can make the other side hold: frames as well as bytes (issue 13, item 8: a
 * Ping is 6 bytes on the wire and an object of some hundreds decoded).
 */
import { describe, expect, it } from "vitest";
import { FrameQueue, MAX_QUEUED_FRAMES } from "./frame-queue.js";

describe("FrameQueue", () => {
  it("pauses reading at MAX_QUEUED_FRAMES tiny frames, far below the byte mark, and resumes once half are served", async () => {
    const events: string[] = [];
    const q = new FrameQueue<number>(
      1 << 20,
      () => events.push(`pause at ${q.bufferedFrames}`),
      () => events.push(`resume at ${q.bufferedFrames}`),
    );
    for (let i = 0; i < MAX_QUEUED_FRAMES + 10; i++) q.push(i, 6);
    expect(events).toEqual([`pause at ${MAX_QUEUED_FRAMES}`]);
    const it = q[Symbol.asyncIterator]();
    for (let i = 0; i < MAX_QUEUED_FRAMES / 2 + 20; i++) await it.next();
    expect(events).toEqual([`pause at ${MAX_QUEUED_FRAMES}`, `resume at ${MAX_QUEUED_FRAMES / 2 - 1}`]);
  });

  it("still pauses on bytes: one frame over the byte mark", () => {
    let paused = 0;
    const q = new FrameQueue<string>(1024, () => paused++);
    q.push("big", 1024);
    expect(paused).toBe(1);
  });
});
