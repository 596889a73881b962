/**
 * Small guards a connection applies to what its peer sends (spec §11.1,
 * PDD-SEC-007): a per-second budget of frames, and a cap on the bytes of a
 * message that may carry the peer's input. @internal
 */

/** At most `max` bytes of `s` in UTF-8, cut at a character boundary. */
export function truncateUtf8(s: string, max: number): string {
  const bytes = Buffer.from(s, "utf8");
  if (bytes.length <= max) return s;
  let end = max - 3;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a character
  return `${bytes.subarray(0, end).toString("utf8")}...`;
}

/** Counts events in one-second windows; `allow()` is false once `limit` are spent in the current one. */
export class PerSecond {
  private windowStart = 0;
  private count = 0;
  constructor(private readonly limit: number) {}
  allow(): boolean {
    const now = performance.now();
    if (now - this.windowStart >= 1000) [this.windowStart, this.count] = [now, 0];
    return ++this.count <= this.limit;
  }
}
