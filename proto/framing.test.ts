import { describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "./errors.js";
import { FrameDecoder, frameHeader, lengthPrefixed } from "./framing.js";

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("length-prefixed framing", () => {
  it("writes a 4-byte big-endian length before the payload", () => {
    expect(toHex(lengthPrefixed(hex("0a0b0c")))).toBe("000000030a0b0c");
    expect(toHex(frameHeader(0x01020304))).toBe("01020304");
  });

  it("splits back-to-back frames, including an empty one", () => {
    const d = new FrameDecoder();
    const frames = d.push(hex("00000002 aabb 00000000 00000001 cc"));
    expect(frames.map(toHex)).toEqual(["aabb", "", "cc"]);
    expect(d.bufferedBytes).toBe(0);
  });

  it("reassembles a frame delivered one byte at a time", () => {
    const d = new FrameDecoder();
    const stream = hex("00000005 0102030405");
    const out: string[] = [];
    for (const byte of stream) out.push(...d.push(Uint8Array.of(byte)).map(toHex));
    expect(out).toEqual(["0102030405"]);
  });

  it("returns a view into the received chunk instead of copying when it can", () => {
    const chunk = hex("00000002 aabb");
    const [frame] = new FrameDecoder().push(chunk);
    expect(frame!.buffer).toBe(chunk.buffer);
  });

  it("refuses an oversize frame as soon as its header arrives, before the payload", () => {
    const d = new FrameDecoder(16);
    let err: unknown;
    try {
      d.push(hex("00000011")); // 17 bytes announced, none sent
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).code).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(d.bufferedBytes).toBe(0);
  });

  it("refuses a 4 GiB announcement without allocating it", () => {
    const d = new FrameDecoder();
    expect(() => d.push(hex("ffffffff 00"))).toThrow(/frame_too_large/);
  });

  it("reports a stream cut inside a frame as MALFORMED_FRAME", () => {
    const d = new FrameDecoder();
    d.push(hex("00000004 0102"));
    expect(() => d.end()).toThrow(/malformed_frame.*2 bytes of a 4-byte payload/);
    const h = new FrameDecoder();
    h.push(hex("0000"));
    expect(() => h.end()).toThrow(/header/);
  });
});
