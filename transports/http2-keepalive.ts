/** HTTP/2 PING keep-alive for server sessions (gRPC, WebTransport over HTTP/2). @internal */
import type { Http2Session } from "node:http2";

/**
 * Pings `session` every `intervalMs`; destroys it when no PING ACK arrives
 * within `timeoutMs`, which ends every stream on it as an abrupt loss.
 */
export function keepHttp2SessionAlive(
  session: Http2Session,
  intervalMs: number,
  timeoutMs: number,
  onDead?: () => void,
): void {
  let outstanding: NodeJS.Timeout | undefined;
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return stop();
    if (outstanding) return;
    outstanding = setTimeout(() => {
      stop();
      onDead?.();
      session.destroy(new Error(`no PING ACK within ${timeoutMs} ms`));
    }, timeoutMs);
    outstanding.unref();
    try {
      // The callback's error (a ping cancelled, too many outstanding) is not an ACK: the deadline stands
      // (issue 13, item 7: a stopped WebTransport device was never detected).
      session.ping((err) => {
        if (err) return;
        clearTimeout(outstanding);
        outstanding = undefined;
      });
    } catch {
      stop();
    }
  }, intervalMs);
  timer.unref();
  const stop = () => {
    clearInterval(timer);
    if (outstanding) clearTimeout(outstanding);
  };
  session.once("close", stop);
}
