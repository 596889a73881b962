/**
 * Large first frames, built as bytes (protobufjs would build a million
 * objects first): a Hello whose `versions` field repeats until the frame
 * is `bytes` long.
 */
import { Packr } from "msgpackr";
import { codecName } from "./frames.js";

const packr = new Packr({ useRecords: false, moreTypes: false });

/** A Hello of about `bytes` bytes offering `major` again and again; returns the frame and the entries in it. */
export function bigHello(
  codec: "proto" | "msgpack",
  major: number,
  bytes: number,
): { frame: Uint8Array; entries: number } {
  if (codec === "msgpack") {
    const one = packr.pack({ major }).length;
    const entries = Math.floor((bytes - 64) / one);
    const versions = Array.from({ length: entries }, () => ({ major }));
    return { frame: packr.pack({ hello: { versions, codecs: [codecName(codec)] } }), entries };
  }
  // DeviceFrame.hello (field 1) { versions (field 1) = Version { major (field 1) }, codecs (field 2) = [1] }
  const entry = Buffer.from([0x0a, 0x02, 0x08, major]);
  const entries = Math.floor((bytes - 16) / entry.length);
  const codecs = Buffer.from([0x12, 0x01, 0x01]);
  const body = Buffer.concat([Buffer.alloc(entries * entry.length).fill(entry), codecs]);
  return { frame: Buffer.concat([Buffer.from([0x0a]), varint(body.length), body]), entries };
}

/** A PrefillRequest whose text prompt is `bytes` long (a word repeated). */
export function bigPromptText(bytes: number): string {
  return "fox ".repeat(Math.floor(bytes / 4));
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
