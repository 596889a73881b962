/**
 * A single-consumer async queue of received frames with a high-water mark:
 * `pause` is called when the consumer falls behind and `resume` when it
 * catches up, so a slow reader slows the sender instead of growing memory.
 * The mark counts frames as well as wire bytes: a decoded frame costs far
 * more than its bytes (a 6-byte Ping is an object of a few hundred), so 1 MiB
 * of Pings would otherwise be some 170,000 objects held (issue 13, item 8).
 * @internal
 */
/**
 * Frames queued before reading pauses. Above the 1,000 a second a flood is
 * counted at (PDD-DOS-001), so that a cloud slower than that still sees a
 * flood's first second arrive whole.
 */
export const MAX_QUEUED_FRAMES = 4096;

export class FrameQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private sizes: number[] = [];
  private bytes = 0;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private failure: unknown;
  private paused = false;
  private iterating = false;

  constructor(
    private readonly highWaterMark: number,
    private readonly pause: () => void = () => {},
    private readonly resume: () => void = () => {},
    private readonly maxFrames = MAX_QUEUED_FRAMES,
  ) {}

  get bufferedBytes(): number {
    return this.bytes;
  }

  get bufferedFrames(): number {
    return this.items.length;
  }

  /** Queues an item that took `size` bytes on the wire. */
  push(item: T, size: number): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: item, done: false });
      return;
    }
    this.items.push(item);
    this.sizes.push(size);
    this.bytes += size;
    if (!this.paused && (this.bytes >= this.highWaterMark || this.items.length >= this.maxFrames)) {
      this.paused = true;
      this.pause();
    }
  }

  /** Ends the stream; queued items are still delivered first. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      if (this.failure !== undefined) w.reject(this.failure);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** Ends the stream with an error, delivered after the queued items. */
  fail(error: unknown): void {
    if (this.ended) return;
    this.failure = error;
    this.end();
  }

  private next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) {
      this.bytes -= this.sizes.shift() ?? 0;
      if (this.paused && this.bytes < this.highWaterMark / 2 && this.items.length < this.maxFrames / 2) {
        this.paused = false;
        this.resume();
      }
      return Promise.resolve({ value: item, done: false });
    }
    if (this.ended) {
      if (this.failure !== undefined) {
        const f = this.failure;
        this.failure = undefined;
        return Promise.reject(f);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterating) throw new Error("a MessageStream can be iterated only once");
    this.iterating = true;
    return {
      next: () => this.next(),
      return: () => {
        this.ended = true;
        this.items = [];
        this.sizes = [];
        this.bytes = 0;
        if (this.paused) {
          this.paused = false;
          this.resume();
        }
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
