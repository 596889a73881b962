/**
 * Admission control: a request takes one engine sequence; when none is free
 * it waits in a priority queue of bounded length. A queued request can be
 * cancelled (PDD-CANCEL-003) and is then never prefilled.
 */
import { ErrorCode, PddError } from "../proto/index.js";

interface Waiter {
  priority: number;
  seq: number;
  grant: () => void;
  reject: (e: PddError) => void;
}

export class Admission {
  private used = 0;
  private waiting: Waiter[] = [];
  private counter = 0;

  constructor(
    private readonly capacity: number,
    private readonly queueLimit: number,
    private readonly onChange: (active: number, queued: number) => void = () => {},
  ) {}

  get queued(): number {
    return this.waiting.length;
  }

  /** Refuses at once when the queue is full (RESOURCE_EXHAUSTED, retryable). */
  admit(priority: number): { position: number; granted: Promise<void>; cancel: () => void } {
    if (this.used < this.capacity && this.waiting.length === 0) {
      this.used++;
      this.onChange(this.used, this.waiting.length);
      return { position: 0, granted: Promise.resolve(), cancel: () => {} };
    }
    if (this.waiting.length >= this.queueLimit) {
      throw new PddError(
        ErrorCode.RESOURCE_EXHAUSTED,
        `cloud at capacity (${this.capacity} running, ${this.waiting.length} queued)`,
        { retryable: true },
      );
    }
    let waiter!: Waiter;
    const granted = new Promise<void>((grant, reject) => {
      waiter = { priority, seq: this.counter++, grant, reject };
    });
    this.waiting.push(waiter);
    this.waiting.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    this.onChange(this.used, this.waiting.length);
    return {
      position: this.waiting.indexOf(waiter) + 1,
      granted,
      cancel: () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          this.onChange(this.used, this.waiting.length);
          waiter.reject(new PddError(ErrorCode.CANCELLED, "cancelled while queued"));
        }
      },
    };
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next.grant();
    else this.used--;
    this.onChange(this.used, this.waiting.length);
  }
}
