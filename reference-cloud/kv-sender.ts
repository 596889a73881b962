/**
 * Streams one KV image in chunks under the device's byte credit (spec §7.3,
 * §7.4): offsets in order, CRC-32 per chunk, SHA-256 of the image on the
 * last one, never more data in flight than granted.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { CloudFrameSchema, KvFormat, type CloudFrame } from "../proto/index.js";
import { pause, Pulse } from "./wait.js";

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

/** Room for a KvChunk frame's fields but `data`, in either codec (msgpack spells out the field names). */
const KV_CHUNK_OVERHEAD = 512;

/**
 * Chunk size: what the device asked for (else the cloud's limit), within the
 * cloud's limit and with room for the frame's other fields within the
 * device's frame limit (PDD-KV-005, PDD-LIMIT-006). Never rounded up: values
 * below the minimums (PDD-KV-014, PDD-MSG-012) are refused before a transfer
 * starts, so no chunk is ever longer than the device asked.
 */
export function kvChunkBytes(asked: number, maxKvChunkBytes: number, deviceMaxFrameBytes: number): number {
  return Math.min(asked > 0 ? asked : maxKvChunkBytes, maxKvChunkBytes, deviceMaxFrameBytes - KV_CHUNK_OVERHEAD);
}

/**
 * One request's KV transfer: started once by the decode loop, stopped at once
 * by the request's halt, and abandoned when the device does not take it
 * within the grace period before End.
 */
export class KvTransfer {
  private readonly abandoned = new AbortController();
  /** Aborts on the request's halt or on abandonment: the transfer's waits end then. */
  private readonly stop: AbortSignal;
  private readonly credit = new Pulse();
  private sending: Promise<number> | undefined;

  constructor(
    private readonly o: Pick<KvSendOptions, "requestId" | "chunkBytes" | "credit" | "send"> & {
      halted: AbortSignal;
      /** Stops what the transport still holds of the transfer (WebTransport resets the KV stream, PDD-WT-003). */
      abortBulk: () => void;
    },
  ) {
    this.stop = AbortSignal.any([o.halted, this.abandoned.signal]);
  }

  get started(): boolean {
    return this.sending !== undefined;
  }

  /** The device granted more credit (KvCredit). */
  credited(): void {
    this.credit.fire();
  }

  start(image: Uint8Array, tokenCount: number): void {
    this.sending ??= sendKvImage({
      ...this.o,
      image,
      tokenCount,
      waitForCredit: () => this.credit.next(this.stop),
      stopped: () => this.stop.aborted,
    }).catch(() => 0);
  }

  /** Stops the transfer where it is (a request error: nothing but End may follow, PDD-ORD-004). */
  abandon(): void {
    if (this.abandoned.signal.aborted) return;
    this.abandoned.abort();
    if (this.sending) this.o.abortBulk();
  }

  /**
   * On a single stream End must follow the last chunk (PDD-KV-010): gives the
   * device `graceMs` to take the rest, then abandons the transfer
   * (PDD-KV-018). A halt ends the wait at once. A chunk still blocked on the
   * device's flow control is not awaited: it is already queued ahead of End,
   * the transfer sends nothing after it, and the transport's write deadline
   * ends a connection that never takes it.
   */
  async settle(graceMs: number): Promise<void> {
    if (!this.sending) return;
    const sent = await Promise.race([this.sending.then(() => true), pause(graceMs, this.stop).then(() => false)]);
    if (!sent) this.abandon();
  }
}
