/** The network emulator's schedule, checked without a clock; the bindings through it are in transports.test.ts. */
import { describe, expect, it } from "vitest";
import { LinkSchedule } from "./netem.js";

describe("emulated link schedule", () => {
  it("adds the one-way delay to an idle link", () => {
    expect(new LinkSchedule(25, Number.POSITIVE_INFINITY).deliverAt(100, 5000)).toBe(125);
  });

  it("serializes chunks at the bandwidth: a burst queues behind itself", () => {
    const s = new LinkSchedule(20, 1000); // 8 Mbit/s = 1000 bytes per ms
    expect(s.deliverAt(0, 10_000)).toBe(30); // 10 ms on the wire + 20
    expect(s.deliverAt(1, 1000)).toBe(31); // leaves at 11, behind the first
    expect(s.deliverAt(500, 1000)).toBe(521); // the link was idle again
  });

  it("never delivers a chunk before the one sent ahead of it, whatever the jitter", () => {
    const s = new LinkSchedule(50, Number.POSITIVE_INFINITY);
    const a = s.deliverAt(0, 10, +20);
    const b = s.deliverAt(1, 10, -20);
    expect(a).toBe(70);
    expect(b).toBe(70);
    expect(s.deliverAt(2, 10, -60)).toBe(70); // a delay never goes below zero, nor before the last
  });
});
