/** HTTP/2 PING keep-alive for server sessions (gRPC, WebTransport over HTTP/2). @internal */
import type { Http2Session } from "node:http2";

const guarded = new WeakSet<Http2Session>();

/**
 * Makes `session.ping()` harmless once the session is destroyed. Node's
 * ping() throws ERR_HTTP2_INVALID_SESSION on a destroyed session, while
 * `session.closed` stays false until the socket's close event, a few event
 * loop turns later; @fails-components/webtransport pings every second on
 * both ends while `!session.closed`, so a ping in that window threw from a
 * timer and ended the process (a cloud whose keep-alive had just destroyed a
 * silent WebTransport device's session died; a CI run saw it once, as
 * ECONNREFUSED from the cloud's metrics). Here the ping fails through its
 * callback instead, as a cancelled ping does.
 */
export function guardPingAfterDestroy(session: Http2Session): void {
  if (guarded.has(session)) return;
  guarded.add(session);
  const ping = session.ping;
  session.ping = function (this: Http2Session, ...args: unknown[]): boolean {
    if (!this.destroyed) return (ping as (...a: unknown[]) => boolean).apply(this, args);
    const callback = args.find((a) => typeof a === "function") as ((err: Error) => void) | undefined;
    if (callback) process.nextTick(callback, new Error("the HTTP/2 session is destroyed"));
    return false;
  } as Http2Session["ping"];
}

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
  guardPingAfterDestroy(session);
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
