/**
 * PDD-WT-007: on WebTransport a KvChunk travels on its own stream and can
 * arrive before its request's Accepted. The link holds such chunks and hands
 * them to the request right after Accepted (or a request Error), so the
 * request's state machine sees the order the cloud sent. Held bytes are
 * bounded by the request's initial KV credit: the cloud may send no more
 * before Accepted, since no KvCredit was sent yet (PDD-KV-008).
 */
import type { CloudFrame, DeviceFrame } from "../proto/index.js";

interface Held {
  frames: CloudFrame[];
  bytes: number;
}

export class EarlyKvChunks {
  /** Requests whose Accepted or Error has come: their chunks pass straight through. */
  private readonly started = new Set<number>();
  private readonly held = new Map<number, Held>();
  private readonly credit = new Map<number, number>();

  /** Notes the initial credit of a PrefillRequest the device sends. */
  sent(frame: DeviceFrame): void {
    const b = frame.body;
    if (b.case === "prefillRequest" && b.value.kv)
      this.credit.set(b.value.requestId, Number(b.value.kv.initialCreditBytes));
  }

  /** The frames to hand to request `id`'s sink now that `frame` came for it. */
  route(id: number, frame: CloudFrame): CloudFrame[] {
    const b = frame.body;
    if (b.case === "kvChunk" && !this.started.has(id)) {
      const h = this.held.get(id) ?? { frames: [], bytes: 0 };
      h.frames.push(frame);
      h.bytes += b.value.data.length;
      // Over the credit: no longer an overtaken chunk but the cloud's violation; the request sees it as sent.
      if (h.bytes > (this.credit.get(id) ?? 0)) return this.release(id);
      this.held.set(id, h);
      return [];
    }
    if (b.case === "accepted" || b.case === "error") {
      this.started.add(id);
      return [frame, ...this.release(id)];
    }
    if (b.case === "end") this.forget(id);
    return [frame];
  }

  forget(id: number): void {
    this.started.delete(id);
    this.held.delete(id);
    this.credit.delete(id);
  }

  private release(id: number): CloudFrame[] {
    const frames = this.held.get(id)?.frames ?? [];
    this.held.delete(id);
    return frames;
  }
}
