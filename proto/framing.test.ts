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

  it("slices a payload that arrives in one chunk without copying, even after an empty read", () => {
    const d = new FrameDecoder();
    const payload = hex("aabbcc");
    expect(d.push(hex("00000003"))).toEqual([]);
    expect(d.push(new Uint8Array(0))).toEqual([]);
    const [frame] = d.push(payload);
    expect(frame!.buffer).toBe(payload.buffer);
  });

  it("holds the stream's first frame to its own, smaller limit, and only the first", () => {
    const d = new FrameDecoder(16, 4);
    expect(codeOf(() => d.push(hex("00000005 0102030405")))).toBe(ErrorCode.FRAME_TOO_LARGE);
    const ok = new FrameDecoder(16, 4);
    expect(ok.push(hex("00000004 01020304 00000010")).map(toHex)).toEqual(["01020304"]);
    // A first-frame limit above max_frame_bytes does not raise it.
    expect(codeOf(() => new FrameDecoder(4, 16).push(hex("00000005")))).toBe(ErrorCode.FRAME_TOO_LARGE);
  });

  it("names the limit and the local code in a FRAME_TOO_LARGE", () => {
    expect(() => new FrameDecoder(16).push(hex("00000011"))).toThrow(
      expect.objectContaining({
        local: "ERR_FRAME_TOO_LARGE",
        message: expect.stringMatching(/announces 17 bytes; the limit is 16/),
      }),
    );
  });

  it("starts clean after refusing a frame: nothing of it is kept, the next header is read as one", () => {
    const d = new FrameDecoder(16);
    expect(codeOf(() => d.push(hex("00000011 0102")))).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(d.bufferedBytes).toBe(0);
    expect(d.push(hex("00000002 aabb")).map(toHex)).toEqual(["aabb"]);
    expect(() => d.end()).not.toThrow();
  });

  it("ends cleanly between frames, and not after a header whose payload never came", () => {
    const d = new FrameDecoder();
    expect(() => d.end()).not.toThrow();
    d.push(hex("00000002 aabb"));
    expect(() => d.end()).not.toThrow();
    const cut = new FrameDecoder();
    cut.push(hex("00000005"));
    expect(cut.bufferedBytes).toBe(0);
    expect(() => cut.end()).toThrow(
      expect.objectContaining({
        code: ErrorCode.MALFORMED_FRAME,
        local: "ERR_FRAME_TRUNCATED",
        message: expect.stringMatching(/0 bytes of a 5-byte payload/),
      }),
    );
  });
});

function codeOf(fn: () => unknown): ErrorCode | "none" {
  try {
    fn();
    return "none";
  } catch (e) {
    expect(e).toBeInstanceOf(PddError);
    return (e as PddError).code;
  }
}
