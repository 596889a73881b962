/**
 * Admission control: a request takes one engine sequence; when none is free
 * it waits in a priority queue of bounded length. A queued request can be
 * cancelled (PDD-CANCEL-003) and is then never prefilled.
 *
 * Every successful `admit` returns a ticket whose `leave()` gives back
 * whatever it holds at that moment, its place in the queue or its slot, and
 * is idempotent: the request calls it once, in `finally`, whatever happened
 * after `admit` (a send that failed because the peer is gone included), so a
 * slot can never outlive its request (issue 13, item 1).
 */
import { ErrorCode, PddError } from "../proto/index.js";

interface Waiter {
  priority: number;
  seq: number;
  grant: () => void;
  reject: (e: PddError) => void;
}

export interface AdmissionTicket {
  /** 0 when admitted at once, else the 1-based place in the queue. */
  position: number;
  /** Resolves when the ticket holds a slot; rejects (CANCELLED) when it left the queue first. */
  granted: Promise<void>;
  /** Leaves the queue, if still in it (a halt); a slot already held stays held. */
  cancel: () => void;
  /** Gives back what the ticket holds: its place in the queue or its slot. Idempotent. */
  leave: () => void;
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

  /** Slots held now (admitted requests that have not left). */
  get active(): number {
    return this.used;
  }

  /** Refuses at once when the queue is full (RESOURCE_EXHAUSTED, retryable). */
  admit(priority: number): AdmissionTicket {
    let holding = false;
    let left = false;
    const leaveHeld = () => {
      if (left) return;
      left = true;
      if (holding) this.release();
    };
    if (this.used < this.capacity && this.waiting.length === 0) {
      this.used++;
      holding = true;
      this.onChange(this.used, this.waiting.length);
      return { position: 0, granted: Promise.resolve(), cancel: () => {}, leave: leaveHeld };
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
      waiter = {
        priority,
        seq: this.counter++,
        grant: () => {
          holding = true;
          grant();
        },
        reject,
      };
    });
    granted.catch(() => undefined); // a ticket that left the queue may never be awaited
    this.waiting.push(waiter);
    this.waiting.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    this.onChange(this.used, this.waiting.length);
    const cancel = () => {
      const i = this.waiting.indexOf(waiter);
      if (i < 0) return;
      this.waiting.splice(i, 1);
      this.onChange(this.used, this.waiting.length);
      waiter.reject(new PddError(ErrorCode.CANCELLED, "cancelled while queued"));
    };
    return {
      position: this.waiting.indexOf(waiter) + 1,
      granted,
      cancel,
      leave: () => {
        cancel();
        leaveHeld();
      },
    };
  }

  /** Gives back one slot: the next queued request takes it over, or it becomes free. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next.grant();
    else this.used--;
    this.onChange(this.used, this.waiting.length);
  }
}
