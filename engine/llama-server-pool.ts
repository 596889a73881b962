/**
 * The llama-server backends behind one cloud: each request goes to the
 * least-loaded healthy backend, and a backend that fails `/health` (or a
 * request) leaves rotation until `/health` answers again. The load of a
 * backend is the larger of the cloud's own requests on it and the slots its
 * `/slots` reports busy, which counts other cloud peers sharing the backend.
 * @internal
 */
import { ErrorCode, PddError } from "../proto/index.js";
import type { BackendStatus } from "./inference.js";
import type { LlamaServerClient } from "./llama-server-client.js";

export type { BackendStatus };

export class Backend {
  healthy = true;
  active = 0;
  reportedBusy = 0;
  failures = 0;
  /** Health checks in a row that timed out. */
  slowChecks = 0;
  /** Slot IDs none of this cloud's requests holds. */
  readonly freeSlots: number[];
  constructor(
    readonly client: LlamaServerClient,
    readonly slots: number,
    readonly reportsSlots: boolean,
  ) {
    this.freeSlots = Array.from({ length: slots }, (_, i) => slots - 1 - i);
  }

  get load(): number {
    return Math.max(this.active, this.reportedBusy) / this.slots;
  }

  status(): BackendStatus {
    const { healthy, slots, active, reportedBusy, failures } = this;
    return { url: this.client.url, healthy, slots, active, reportedBusy, failures };
  }
}

export interface PoolOptions {
  /** How often every backend's /health (and /slots) is read; default 250 ms, so a dead one leaves within 1 s. */
  healthIntervalMs?: number;
  /** Told when a backend leaves or rejoins rotation. */
  onChange?: (b: BackendStatus, why: string) => void;
}

export class BackendPool {
  private readonly waiters: (() => void)[] = [];
  private readonly timer: NodeJS.Timeout;
  private checking = false;
  private closed = false;

  constructor(
    readonly backends: Backend[],
    private readonly options: PoolOptions = {},
  ) {
    this.timer = setInterval(() => void this.check(), options.healthIntervalMs ?? 250);
    this.timer.unref();
  }

  get capacity(): number {
    return this.backends.reduce((n, b) => n + b.slots, 0);
  }

  get active(): number {
    return this.backends.reduce((n, b) => n + b.active, 0);
  }

  status(): BackendStatus[] {
    return this.backends.map((b) => b.status());
  }

  /**
   * A backend with a free slot, least loaded first, and the slot's ID: each of
   * this cloud's requests pins its own slot (`id_slot`), so that its resumed
   * requests and its slot save find its KV and no other request of ours.
   * Waits while every healthy backend is full; UNAVAILABLE (retryable) when
   * none is healthy.
   */
  async acquire(): Promise<{ backend: Backend; idSlot: number }> {
    for (;;) {
      if (this.closed) throw new PddError(ErrorCode.UNAVAILABLE, "the llama-server pool is closed");
      const healthy = this.backends.filter((b) => b.healthy);
      if (healthy.length === 0)
        throw new PddError(
          ErrorCode.UNAVAILABLE,
          `every llama-server backend is down (${this.backends.map((b) => b.client.url).join(", ")})`,
          { retryable: true },
        );
      const free = healthy.filter((b) => b.active < b.slots);
      const best = free.sort((a, b) => a.load - b.load || a.active - b.active)[0];
      if (best) {
        best.active++;
        return { backend: best, idSlot: best.freeSlots.pop()! };
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  release(b: Backend, idSlot: number): void {
    b.active--;
    b.freeSlots.push(idSlot);
    this.wake();
  }

  /** Takes a backend out of rotation at once (a request to it failed); the health check brings it back. */
  markDown(b: Backend, why: string): void {
    if (!b.healthy) return;
    b.healthy = false;
    b.failures++;
    this.options.onChange?.(b.status(), why);
    this.wake();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.wake();
  }

  /** One round of health checks; a round still running when the next is due is not doubled. */
  async check(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      await Promise.all(this.backends.map((b) => this.checkOne(b)));
    } finally {
      this.checking = false;
    }
  }

  /**
   * A refused or failed /health takes the backend out at once (a dead process
   * leaves within one period); a /health that times out does so only the
   * fourth time in a row, so that a busy machine does not empty the rotation.
   */
  private async checkOne(b: Backend): Promise<void> {
    const timeout = AbortSignal.timeout(Math.max(200, (this.options.healthIntervalMs ?? 250) * 3));
    const health = await b.client.health(timeout);
    b.slowChecks = health === "slow" ? b.slowChecks + 1 : 0;
    if (health === "slow" && b.slowChecks < 4) return;
    const ok = health === "ok";
    if (ok && b.reportsSlots) b.reportedBusy = await b.client.busySlots(timeout).catch(() => b.reportedBusy);
    if (ok === b.healthy) return;
    if (!ok)
      return this.markDown(b, health === "slow" ? "GET /health timed out 4 times in a row" : "GET /health failed");
    b.healthy = true;
    this.options.onChange?.(b.status(), "GET /health answered ok");
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
