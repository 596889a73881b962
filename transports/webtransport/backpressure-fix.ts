/**
 * Receive-side backpressure for @fails-components/webtransport 1.6.8.
 *
 * The library moves incoming bytes into each stream's ReadableStream and
 * grants flow-control credit as it does so; it asks to stop reading only
 * when a read was pending and drained, so a consumer that does not read lets
 * the queue (and the sender) grow without limit — 64 MiB went into a reader
 * that read nothing (measured). Stopping whenever the readable's queue is
 * full makes credit follow consumption, so the WebTransport windows push back
 * on the sender. Reading resumes from the stream's own `pull`. The version is
 * pinned and the slow-reader transport test guards this behaviour.
 * @internal
 */
interface LibStream {
  readableController?: { desiredSize: number | null };
  readableclosed?: boolean;
  finaldrain_?: boolean;
  commitReadBuffer(args: unknown): { stopReading?: boolean };
}

const patched = new WeakSet<object>();

export function applyBackpressureFix(stream: unknown): void {
  const proto = stream && Object.getPrototypeOf(stream);
  if (!proto || patched.has(proto) || typeof (proto as LibStream).commitReadBuffer !== "function") return;
  patched.add(proto);
  const original = (proto as LibStream).commitReadBuffer;
  (proto as LibStream).commitReadBuffer = function (this: LibStream, args: unknown) {
    const ret = original.call(this, args) ?? {};
    const desired = this.readableController?.desiredSize;
    if (!this.readableclosed && !this.finaldrain_ && desired != null && desired <= 0) ret.stopReading = true;
    return ret;
  };
}
