/**
 * Streams one KV image in chunks under the device's byte credit (spec §7.3,
 * §7.4): offsets in order, CRC-32 per chunk, SHA-256 of the image on the
 * last one, never more data in flight than granted.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { CloudFrameSchema, KvFormat, type CloudFrame } from "../proto/index.js";

export interface KvSendOptions {
  requestId: number;
  image: Uint8Array;
  tokenCount: number;
  chunkBytes: number;
  /** Credit granted so far (initial + KvCredit), read before each chunk. */
  credit: () => bigint;
  /** Resolves when more credit arrives or the transfer should stop. */
  waitForCredit: () => Promise<void>;
  stopped: () => boolean;
  send: (frame: CloudFrame, last: boolean) => Promise<void>;
}

/** Returns the bytes sent; stops early when `stopped()` turns true. */
export async function sendKvImage(o: KvSendOptions): Promise<number> {
  const total = o.image.length;
  // Hashed chunk by chunk as it goes out: no 100 ms pause on a large image.
  const sha = createHash("sha256");
  let offset = 0;
  while (offset < total && !o.stopped()) {
    const available = Number(o.credit() - BigInt(offset));
    if (available <= 0) {
      await o.waitForCredit();
      continue;
    }
    const n = Math.min(o.chunkBytes, available, total - offset);
    const data = o.image.subarray(offset, offset + n);
    const last = offset + n === total;
    sha.update(data);
    await o.send(
      create(CloudFrameSchema, {
        body: {
          case: "kvChunk",
          value: {
            requestId: o.requestId,
            format: KvFormat.LLAMA_SEQ_STATE,
            tokenStart: 0,
            tokenCount: o.tokenCount,
            offset: BigInt(offset),
            totalBytes: BigInt(total),
            data,
            crc32: crc32(data),
            imageSha256: last ? new Uint8Array(sha.digest()) : new Uint8Array(),
          },
        },
      }),
      last,
    );
    offset += n;
  }
  return offset;
}
