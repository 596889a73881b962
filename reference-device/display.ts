/**
 * The device's display: the cloud's tokens and then the device's own, shown
 * one by one at the speed controller's pace (a steady target rate, stretched
 * so the cloud's tokens last until the local model takes over); gaps counted
 * as stalls; bytes decoded as UTF-8 across token boundaries; the timing
 * report. @internal
 */
import { SpeedController } from "./speed-controller.js";
import { completeUtf8Prefix } from "./utf8.js";

export interface Shown {
  piece: Uint8Array;
  source: "cloud" | "device";
}

/** What the speed controller needs to know of the rest of the run, read before each token. */
export interface PaceSource {
  /** Cloud tokens still to come; 0 once the cloud stopped or the device took over. */
  cloudRemaining(): number;
  /** Ms until the local model emits its first own token; undefined when no handover is ahead. */
  localEtaMs(): number | undefined;
  /** Measured ms per locally decoded token, once known. */
  localTpotMs(): number | undefined;
}

export interface DisplayTiming {
  text: string;
  ttftMs: number;
  tpotMs: { p50: number; max: number };
  stalls: number;
}

export class Display {
  private queue: Shown[] = [];
  /** No more tokens will be pushed: the loop ends when the queue is empty. */
  private closed = false;
  private wakeup: (() => void) | undefined;
  private readonly controller: SpeedController;
  // What was shown, and when.
  private shownCloudTokens = 0;
  private readonly times: number[] = [];
  private readonly bytes: Uint8Array[] = [];
  private readonly decoder = new TextDecoder("utf-8");

  constructor(
    private readonly targetTpotMs: number,
    private readonly pace: PaceSource,
    private readonly onText?: (text: string) => void,
  ) {
    this.controller = new SpeedController(targetTpotMs);
  }

  /** When the last token was shown (performance.now() ms), if one was. */
  get lastShownAt(): number | undefined {
    return this.times[this.times.length - 1];
  }

  /** Cloud tokens shown so far. */
  get shownCloud(): number {
    return this.shownCloudTokens;
  }

  push(item: Shown): void {
    this.queue.push(item);
    this.wake();
  }

  /** Something changed that the loop may be waiting for. */
  wake(): void {
    this.wakeup?.();
  }

  /** Takeover at k: cloud tokens at or past k still waiting to be shown go (PDD-TAKEOVER-003). */
  dropCloudFrom(k: number): void {
    this.queue = this.queue.slice(0, Math.max(0, k - this.shownCloudTokens));
  }

  /** The run was stopped: nothing waiting is shown any more. */
  discard(): void {
    this.queue = [];
    this.wake();
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  /** Shows queued tokens at the controller's pace until closed and empty. */
  async run(): Promise<void> {
    for (;;) {
      const item = this.queue.shift();
      if (!item) {
        if (this.closed && this.queue.length === 0) return;
        await this.idle();
        continue;
      }
      this.show(item);
      if (this.queue.length === 0 && this.closed) return;
      const delay = this.controller.nextDelay({
        buffered: this.queue.length,
        cloudRemaining: this.pace.cloudRemaining(),
        localEtaMs: this.pace.localEtaMs(),
        localTpotMs: this.pace.localTpotMs(),
        local: item.source === "device",
      });
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Waits for the next token. */
  private async idle(): Promise<void> {
    await new Promise<void>((r) => (this.wakeup = r));
    this.wakeup = undefined;
  }

  private show(item: Shown): void {
    this.times.push(performance.now());
    this.bytes.push(item.piece);
    if (item.source === "cloud") this.shownCloudTokens++;
    const text = this.decoder.decode(item.piece, { stream: true });
    if (text) this.onText?.(text);
  }

  /**
   * Ends the text. An answer cut at max tokens inside a character holds its
   * incomplete last bytes back instead of showing U+FFFD (issue 16).
   */
  flush(): void {
    const all = Buffer.concat(this.bytes);
    this.heldBack = all.length - completeUtf8Prefix(all);
    this.decoder.decode(); // drop what it held: the incomplete character
  }

  /** Bytes of an incomplete last character, not shown. */
  private heldBack = 0;

  /** The text shown and its timing, from `t0` (the run's start, performance.now() ms). */
  timing(t0: number): DisplayTiming {
    const gaps = this.times.slice(1).map((t, i) => t - this.times[i]!);
    const sorted = [...gaps].sort((a, b) => a - b);
    return {
      text: shownText(this.bytes, this.heldBack),
      ttftMs: this.times.length ? this.times[0]! - t0 : Number.NaN,
      tpotMs: {
        p50: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : 0,
        max: sorted.length ? sorted[sorted.length - 1]! : 0,
      },
      // A stall is a gap between two shown tokens over twice the target, whatever made it: the display
      // waiting for a token, or the event loop held (a KV import showed 160 ms with 0 stalls when only
      // waits counted). --tpot-ms 0 means "as fast as possible": no gap is a stall then (issue 16).
      stalls: countStalls(gaps, this.targetTpotMs),
    };
  }
}

/** Gaps between shown tokens over twice the target (none at target 0, "as fast as possible"). @internal */
export function countStalls(gaps: number[], targetTpotMs: number): number {
  return targetTpotMs > 0 ? gaps.filter((g) => g > 2 * targetTpotMs).length : 0;
}

/** The answer's text without its last `heldBack` bytes (an incomplete character). */
function shownText(bytes: Uint8Array[], heldBack: number): string {
  const all = Buffer.concat(bytes);
  return all.subarray(0, all.length - heldBack).toString("utf8");
}
