import { describe, expect, it } from "vitest";
import { parseCloudConfig } from "./config.js";

describe("cloud config", () => {
  it("fills every limit with its spec default", () => {
    const c = parseCloudConfig({});
    expect(c.limits).toEqual({
      maxFrameBytes: 4 << 20,
      maxConcurrentRequests: 8,
      maxCloudTokenBudget: 256,
      maxKvChunkBytes: 1 << 20,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
      maxRequestDurationMs: 600_000,
    });
    expect(c.sequences).toBe(4);
  });

  it.each([
    [{ listen: { ws: "nohost" } }, /listen.ws: expected HOST:PORT/],
    [{ sequences: 0 }, /sequences/],
    [{ limits: { maxFrameBytes: 10 } }, /limits.maxFrameBytes/],
    [{ bogus: true }, /Unrecognized key|unrecognized/i],
  ])("rejects %j with the offending path", (input, message) => {
    expect(() => parseCloudConfig(input)).toThrow(message);
  });
});
