/**
 * The device's side of a KV transfer (spec §7): each chunk checked by its
 * CRC-32 as it comes (PDD-KV-007: a bad one means recompute instead), its
 * bytes handed back as credit (PDD-KV-009), and on the last chunk the image
 * assembled and checked against its size and SHA-256. Its memory is bounded
 * (PDD-KV-016): an image announcing more bytes than the device's model makes
 * for the positions it may hold is refused before a byte is kept, and no
 * credit is returned beyond it. Pure: the caller sends the credit and runs
 * the deadline (PDD-KV-020) with `giveUp`. @internal
 *
 *   none ──Accepted(kv granted)──▶ receiving ──last chunk, checks pass──▶ ready
 *                                      └──bad CRC, too big, bad image, ──▶ failed ◀──import fails── ready
 *                                         deadline, cloud gone
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { ErrorCode, type Grant, type KvChunk } from "../proto/index.js";

export type KvPhase = "none" | "receiving" | "ready" | "failed";

export class KvReceiver {
  phase: KvPhase = "none";
  /** Why a granted image was not used (for the report). */
  reason: string | undefined;
  /**
   * The KvAbort a transfer given up while the cloud may still send owes it
   * (PDD-KV-007, PDD-KV-016, PDD-KV-020); taken once by `takeAbort`.
   */
  private abort: { code: ErrorCode; reason: string } | undefined;
  /** Bytes of `data` taken so far. */
  private taken = 0;
  /** What Accepted said: asked, granted, or refused with a registry code (for the report). */
  asked = false;
  granted = false;
  refusal: string | undefined;
  /** Positions the image covers (prompt + answer tokens, PDD-KV-012). */
  positions = 0;
  /** The checked image, once ready. */
  image: Uint8Array | undefined;
  private chunks: Uint8Array[] = [];
  private readonly hash = createHash("sha256");

  /** `maxBytes`: the largest image the device accepts (its model's image of every position it may hold). */
  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {}

  /** Accepted's answer to the KV ask (undefined: not asked). */
  accepted(grant: Grant | undefined): void {
    this.asked = grant !== undefined;
    this.granted = grant?.granted === true;
    if (grant && !grant.granted) this.refusal = ErrorCode[grant.refusal];
    if (this.granted) this.phase = "receiving";
  }

  /** A chunk (`last`: the image's final one). Returns the bytes of credit to give back; 0 when it was not taken. */
  chunk(c: KvChunk, last: boolean): number {
    this.positions = c.tokenCount;
    if (this.phase !== "receiving") return 0;
    // The size first: nothing of an image too big to take is kept, whatever its checksums (PDD-KV-016).
    if (c.totalBytes > BigInt(Math.min(this.maxBytes, Number.MAX_SAFE_INTEGER)))
      return this.fail(
        `KV image of ${c.totalBytes} bytes announced, more than the ${this.maxBytes} this device accepts`,
        ErrorCode.RESOURCE_EXHAUSTED,
      );
    if (crc32(c.data) !== c.crc32)
      return this.fail(`KV chunk at offset ${c.offset}: CRC-32 mismatch`, ErrorCode.KV_INTEGRITY);
    this.taken += c.data.length;
    if (this.taken > Number(c.totalBytes))
      return this.fail(`KV data past the announced ${c.totalBytes} bytes`, ErrorCode.PROTOCOL_VIOLATION);
    this.chunks.push(c.data);
    this.hash.update(c.data); // as chunks come: no long pause at the end
    if (last) this.assemble(Number(c.totalBytes), c.imageSha256);
    return c.data.length;
  }

  private assemble(totalBytes: number, sha256: Uint8Array): void {
    const image = Buffer.concat(this.chunks);
    this.chunks = [];
    if (image.length !== totalBytes || !this.hash.digest().equals(Buffer.from(sha256)))
      this.fail("KV image: size or SHA-256 mismatch", ErrorCode.KV_INTEGRITY);
    else {
      this.image = image;
      this.phase = "ready";
    }
  }

  /** The cloud ended, failed or was lost: a transfer under way will not complete. */
  interrupted(why = "the cloud stopped before the image was complete"): void {
    if (this.phase === "receiving") this.fail(why);
  }

  /** The transfer stalled past the device's deadline (PDD-KV-020); the cloud may still be sending, so it is told. */
  giveUp(why: string): void {
    if (this.phase === "receiving") this.fail(why, ErrorCode.CANCELLED);
  }

  /** The KvAbort owed to the cloud, once: undefined when none is (or it was already taken). */
  takeAbort(): { code: ErrorCode; reason: string } | undefined {
    const a = this.abort;
    this.abort = undefined;
    return a;
  }

  /** The image did not fit or load: the device recomputes instead. */
  rejected(why: string): void {
    this.fail(why);
  }

  /** `abortCode`: the transfer may go on at the cloud, which a KvAbort with this code stops. */
  private fail(why: string, abortCode?: ErrorCode): 0 {
    if (abortCode !== undefined && this.phase === "receiving") this.abort = { code: abortCode, reason: why };
    this.phase = "failed";
    this.reason ??= why;
    this.chunks = [];
    this.image = undefined;
    return 0;
  }

  report(): { asked: boolean; granted: boolean; refusal?: string; reason?: string } {
    return {
      asked: this.asked,
      granted: this.granted,
      ...(this.refusal ? { refusal: this.refusal } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
    };
  }
}
