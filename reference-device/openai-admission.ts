/**
 * Admission to the device's sequences: at most `parallel` requests generate
 * at once, at most `queue` more wait in order, and the rest are refused at
 * once with 503 and Retry-After (llama-server answers a full server the same
 * way), so a burst can neither grow memory nor latency without bound. A
 * waiting request whose client goes away leaves the queue. @internal
 */
import { ApiError } from "./openai-errors.js";

export class Admission {
  private running = 0;
  private readonly waiting: { admit: () => void }[] = [];

  constructor(
    readonly parallel: number,
    readonly queue: number,
    /** Seconds a refused client is told to wait. */
    private readonly retryAfterS = 1,
  ) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Waits for a free sequence; returns its release. Rejects with 503 when full, or with the signal's reason. */
  async enter(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.running < this.parallel) return this.take();
    if (this.waiting.length >= this.queue) {
      throw new ApiError(
        503,
        `the server is busy: ${this.running} requests running and ${this.waiting.length} waiting; retry later`,
        "overloaded_error",
        null,
        "server_busy",
        { "retry-after": String(this.retryAfterS) },
      );
    }
    await new Promise<void>((resolve, reject) => {
      const entry = { admit: resolve };
      const leave = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal.reason);
      };
      entry.admit = () => {
        signal.removeEventListener("abort", leave);
        resolve();
      };
      signal.addEventListener("abort", leave, { once: true });
      this.waiting.push(entry);
    });
    return this.releaser();
  }

  private take(): () => void {
    this.running++;
    return this.releaser();
  }

  /** Frees the place once; a waiting request takes it over directly, so nothing can slip in between. */
  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) next.admit();
      else this.running--;
    };
  }
}
