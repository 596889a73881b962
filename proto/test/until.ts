/**
 * Waits until an event has made `cond` true: a count, a metric, a closed
 * connection. It checks after each turn of the event loop's timers, so a
 * slow machine only makes the wait longer. The deadline is not a measure of
 * speed: it only turns a hang into a failure that names what was awaited.
 * @internal test support
 */
export async function until(cond: () => boolean | Promise<boolean>, what: string, deadlineMs = 30_000): Promise<void> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > deadlineMs) throw new Error(`still waiting after ${deadlineMs} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
