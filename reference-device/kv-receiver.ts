/**
 * The device's side of a KV transfer (spec §7): each chunk checked by its
 * CRC-32 as it comes (PDD-KV-007: a bad one means recompute instead), its
 * bytes handed back as credit (PDD-KV-009), and on the last chunk the image
 * assembled and checked against its size and SHA-256. Pure: the caller sends
 * the credit. @internal
 *
 *   none ──Accepted(kv granted)──▶ receiving ──last chunk, checks pass──▶ ready
 *                                      └──bad CRC, bad image, cloud gone──▶ failed ◀──import fails── ready
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { ErrorCode, type Grant, type KvChunk } from "../proto/index.js";

export type KvPhase = "none" | "receiving" | "ready" | "failed";

export class KvReceiver {
  phase: KvPhase = "none";
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
    if (crc32(c.data) !== c.crc32) {
      this.phase = "failed";
      return 0;
    }
    this.chunks.push(c.data);
    this.hash.update(c.data); // as chunks come: no long pause at the end
    if (last) this.assemble(Number(c.totalBytes), c.imageSha256);
    return c.data.length;
  }

  private assemble(totalBytes: number, sha256: Uint8Array): void {
    const image = Buffer.concat(this.chunks);
    this.chunks = [];
    if (image.length !== totalBytes || !this.hash.digest().equals(Buffer.from(sha256))) this.phase = "failed";
    else {
      this.image = image;
      this.phase = "ready";
    }
  }

  /** The cloud ended, failed or was lost: a transfer under way will not complete. */
  interrupted(): void {
    if (this.phase === "receiving") this.phase = "failed";
  }

  /** The image did not fit or load: the device recomputes instead. */
  rejected(): void {
    this.phase = "failed";
  }

  report(): { asked: boolean; granted: boolean; refusal?: string } {
    return { asked: this.asked, granted: this.granted, ...(this.refusal ? { refusal: this.refusal } : {}) };
  }
}
