/**
 * The HTTP/2 keep-alive that detects a silent peer on gRPC and WebTransport
 * (PDD-TRANSPORT-002). The peer here is a raw socket that sends the HTTP/2
 * preface and its SETTINGS, then nothing: it never ACKs a PING, as a device
 * under SIGSTOP.
 */
import { connect as tcpConnect, type Socket } from "node:net";
import { createServer, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { keepHttp2SessionAlive } from "./http2-keepalive.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** An empty SETTINGS frame: length 0, type 4, no flags, stream 0. */
const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanups.splice(0)) f();
});

/** A server whose sessions run the keep-alive, and a peer that never answers: the server's session, and its close. */
async function silentPeer(
  onDead: (session: Http2Session) => void,
): Promise<{ session: Http2Session; closed: Promise<void> }> {
  const server = createServer();
  const session = new Promise<Http2Session>((resolve) =>
    server.on("session", (s) => {
      keepHttp2SessionAlive(s, 10, 30, () => onDead(s));
      resolve(s);
    }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const peer: Socket = tcpConnect((server.address() as AddressInfo).port, "127.0.0.1");
  peer.write(Buffer.concat([PREFACE, SETTINGS]));
  peer.on("error", () => undefined);
  cleanups.push(() => {
    peer.destroy();
    server.close();
  });
  const s = await session;
  return { session: s, closed: new Promise((r) => s.once("close", r)) };
}

describe("keepHttp2SessionAlive", () => {
  it("destroys a session whose peer never ACKs a PING", async () => {
    let dead = 0;
    const { session, closed } = await silentPeer(() => dead++);
    await closed;
    expect(dead).toBe(1);
    expect(session.destroyed).toBe(true);
  });

  it("a library that pings while `!session.closed` does not throw after the keep-alive destroys the session", async () => {
    // @fails-components/webtransport's own RTT pinger (lib/http2/node/server.js and client.js) runs every
    // second: `if (!session.closed) session.ping(...)`. After destroy(), `closed` stays false until the
    // socket's close event. Mutation check: without guardPingAfterDestroy, ping() throws
    // ERR_HTTP2_INVALID_SESSION here: from the library's timer, an uncaught exception that ended the cloud.
    let thrown: unknown;
    let checked = false;
    let pingError: unknown;
    const { closed } = await silentPeer((s) => {
      // Runs right after the keep-alive's destroy(), before the socket's close event: the window the
      // library's interval can fall into.
      queueMicrotask(() => {
        checked = true;
        try {
          if (!s.closed) s.ping((err) => (pingError = err));
        } catch (e) {
          thrown = e;
        }
      });
    });
    await closed;
    expect(checked).toBe(true);
    expect(thrown).toBeUndefined();
    // The ping fails through its callback, as a cancelled ping does.
    expect(pingError).toBeInstanceOf(Error);
  });
});
