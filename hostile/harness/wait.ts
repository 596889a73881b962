/**
 * Waiting on conditions against a deadline: every hostile case waits for an
 * event it can observe (a metric, a log line, a frame), polled, never for a
 * fixed time.
 */

/** Polls `probe` until `done(value)` or the deadline; returns the last value and when it came. */
export async function pollUntil<T>(
  probe: () => Promise<T> | T,
  done: (v: T) => boolean,
  deadlineMs: number,
  everyMs = 50,
): Promise<{ value: T; ok: boolean; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const value = await probe();
    const ms = performance.now() - t0;
    if (done(value)) return { value, ok: true, ms };
    if (ms >= deadlineMs) return { value, ok: false, ms };
    await new Promise((r) => setTimeout(r, Math.min(everyMs, Math.max(1, deadlineMs - ms))));
  }
}

/** Resolves with the promise's value, or `undefined` once `ms` have passed. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Yields to the event loop (between bursts of a flood, so the attacker's own sockets get to write). */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
