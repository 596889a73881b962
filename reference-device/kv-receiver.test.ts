/**
 * The device's KV receiver on its own: it takes chunks whose CRC-32 holds and
 * returns their bytes as credit, assembles the image on the last chunk, and
 * refuses (recompute instead, PDD-KV-007) a bad chunk or an image whose size
 * or SHA-256 is wrong.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ErrorCode, GrantSchema, KvChunkSchema, KvFormat } from "../proto/index.js";
import { KvReceiver } from "./kv-receiver.js";

const image = Uint8Array.from(Buffer.from("00112233445566778899aabbccddeeff0102", "hex"));
const sha = new Uint8Array(createHash("sha256").update(image).digest());

/** The image in chunks of `size` bytes, as a cloud sends it. */
function chunks(size: number, o: { sha?: Uint8Array; total?: number } = {}) {
  const out = [];
  for (let offset = 0; offset < image.length; offset += size) {
    const data = image.subarray(offset, offset + size);
    const last = offset + size >= image.length;
    out.push({
      last,
      chunk: create(KvChunkSchema, {
        format: KvFormat.LLAMA_SEQ_STATE,
        tokenCount: 7,
        offset: BigInt(offset),
        totalBytes: BigInt(o.total ?? image.length),
        data,
        crc32: crc32(data),
        imageSha256: last ? (o.sha ?? sha) : new Uint8Array(),
      }),
    });
  }
  return out;
}

const granted = () => {
  const r = new KvReceiver();
  r.accepted(create(GrantSchema, { granted: true }));
  return r;
};

describe("the device's KV receiver", () => {
  it("returns each chunk's bytes as credit and holds the checked image after the last", () => {
    const r = granted();
    const credit = chunks(8).map((c) => r.chunk(c.chunk, c.last));
    expect(credit).toEqual([8, 8, 2]);
    expect(r.phase).toBe("ready");
    expect(Buffer.from(r.image ?? []).equals(image)).toBe(true);
    expect(r.positions).toBe(7);
  });

  it("fails on a chunk whose CRC-32 does not match, and takes nothing after it", () => {
    const r = granted();
    const [first, second, third] = chunks(8);
    expect(r.chunk(first!.chunk, false)).toBe(8);
    second!.chunk.crc32 ^= 1;
    expect(r.chunk(second!.chunk, false)).toBe(0);
    expect(r.chunk(third!.chunk, true)).toBe(0);
    expect(r.phase).toBe("failed");
    expect(r.image).toBeUndefined();
  });

  it("fails on an image whose SHA-256 or size is wrong", () => {
    for (const bad of [{ sha: new Uint8Array(32) }, { total: image.length + 1 }]) {
      const r = granted();
      for (const c of chunks(8, bad)) r.chunk(c.chunk, c.last);
      expect(r.phase).toBe("failed");
    }
  });

  it("takes no chunk without a grant, and reports a refusal by its code", () => {
    const r = new KvReceiver();
    r.accepted(create(GrantSchema, { granted: false, refusal: ErrorCode.MODEL_MISMATCH }));
    expect(r.chunk(chunks(32)[0]!.chunk, true)).toBe(0);
    expect(r.report()).toEqual({ asked: true, granted: false, refusal: "MODEL_MISMATCH" });
    expect(new KvReceiver().report()).toEqual({ asked: false, granted: false });
  });

  it("a transfer the cloud abandons fails; a finished image stays ready", () => {
    const r = granted();
    r.chunk(chunks(8)[0]!.chunk, false);
    r.interrupted();
    expect(r.phase).toBe("failed");
    const done = granted();
    for (const c of chunks(8)) done.chunk(c.chunk, c.last);
    done.interrupted();
    expect(done.phase).toBe("ready");
  });

  it("owes the cloud one KvAbort with the code of why it gave a transfer up, and none for a transfer the cloud ended", () => {
    const codeOf = (r: KvReceiver) => r.takeAbort()?.code;
    const bad = granted();
    const [first] = chunks(8);
    first!.chunk.crc32 ^= 1;
    bad.chunk(first!.chunk, false);
    expect(codeOf(bad)).toBe(ErrorCode.KV_INTEGRITY);
    expect(bad.takeAbort()).toBeUndefined(); // once
    const small = new KvReceiver(16);
    small.accepted(create(GrantSchema, { granted: true }));
    // Too big is found before the checksum: the size decides (PDD-KV-016).
    expect(small.chunk({ ...chunks(8)[0]!.chunk, crc32: 0 }, false)).toBe(0);
    expect(codeOf(small)).toBe(ErrorCode.RESOURCE_EXHAUSTED);
    const stalled = granted();
    stalled.giveUp("no chunk for 10 s");
    expect(codeOf(stalled)).toBe(ErrorCode.CANCELLED);
    const ended = granted();
    ended.interrupted();
    expect(codeOf(ended)).toBeUndefined();
  });
});
