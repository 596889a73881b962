/**
 * The waits of a request, each of which ends at once when the request halts
 * (its AbortSignal aborts), so End follows a Takeover or Cancel within one
 * event-loop turn plus transport time (PDD-TAKEOVER-004, PDD-CANCEL-001)
 * instead of after a pacing interval. @internal
 */

/** setTimeout's largest delay: a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Resolves after `ms`, or at once when `signal` aborts; never rejects. A wait
 * longer than 24.8 days ends then: pacing is advisory (target_tpot_us), and
 * the request-duration limit ends such a request long before.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || !(ms > 0)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS));
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A timer for a limit that must not keep the process alive (the request-duration limit), clamped as `pause`. */
export function limitTimer(ms: number, onExpiry: () => void): NodeJS.Timeout {
  return setTimeout(onExpiry, Math.max(0, Math.min(ms, MAX_TIMER_MS))).unref();
}

/** An event that recurs (KV credit came): `next` resolves on the next `fire`, or at once when `signal` aborts. */
export class Pulse {
  private readonly waiting = new Set<() => void>();

  fire(): void {
    for (const wake of [...this.waiting]) wake();
  }

  next(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.waiting.delete(wake);
        signal.removeEventListener("abort", wake);
        resolve();
      };
      this.waiting.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }
}
