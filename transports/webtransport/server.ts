/**
 * `createWebTransportServer`: the WebTransport binding's server (spec §10.4).
 * It serves WebTransport over HTTP/2 (pure JS, works everywhere) and, when
 * the optional native module is installed, over HTTP/3 as well.
 */
import { randomBytes } from "node:crypto";
import type { HttpServerInit } from "@fails-components/webtransport";
import type { Http2Server, Http2Session } from "node:http2";
import {
  CloudFrameSchema,
  DEFAULT_MAX_FRAME_BYTES,
  DeviceFrameSchema,
  ErrorCode,
  type CloudFrame,
  type CodecName,
  type DeviceFrame,
} from "../../proto/index.js";
import { admit, transportToken } from "../auth.js";
import { guardPingAfterDestroy } from "../http2-keepalive.js";
import { DEFAULTS, type PddServer, type ServerOptions } from "../message-stream.js";
import { trackConnections } from "../server-util.js";
import { codecFromQuery } from "../url.js";
import { loadWebTransport } from "./module.js";
import { WtStream, type WtBidi, type WtSession } from "./stream.js";
import { WT_WINDOWS } from "./windows.js";

export interface WebTransportServerOptions extends ServerOptions {
  tls: { cert: string; key: string };
  /** URL path; default "/pdd/v1". */
  path?: string;
  /** "http2" (default; always available) or "both" (HTTP/3 too, needs the native module). */
  protocols?: "http2" | "both";
}

/** What the CONNECT request decided, kept until its session arrives: serve it with a codec, or refuse it. */
type Ticket = { codec: CodecName; token: string | undefined } | { refuse: ErrorCode; reason: string };

/** A server-side session as the library hands it over, with the fields it adds at run time. */
type ServerSession = WtSession & {
  userData?: { ticket?: string };
  peerAddress?: string;
  incomingBidirectionalStreams?: { getReader(): { read(): Promise<{ value?: WtBidi; done: boolean }> } };
  /** The library's internals, where the HTTP/2 session for keep-alive lives. */
  objint?: { stream?: { session?: Http2Session } };
};

export async function createWebTransportServer(
  options: WebTransportServerOptions,
): Promise<PddServer & { http3: boolean }> {
  const { wt, http3Available } = await loadWebTransport();
  const path = options.path ?? "/pdd/v1";
  const host = options.host ?? "127.0.0.1";
  const useHttp3 = options.protocols === "both" && http3Available;
  const args = serverInit(options, host, useHttp3);
  const server = useHttp3 ? new wt.HttpServer(args) : new wt.Http2Server(args);
  const tracker = trackConnections<WtStream<DeviceFrame, CloudFrame>>();
  // WebTransport clients cannot read the HTTP status of a refused CONNECT, so
  // refusals are sessions closed at once with the PDD code (PDD-WT-001/005).
  const tickets = new Map<string, Ticket>();
  server.setRequestCallback(ticketRequests(options, path, tickets));
  server.startServer();
  await server.ready;
  // Every HTTP/2 connection, served or refused, gets the ping guard: the library pings each one every
  // second, and a connection destroyed by a reset or by our keep-alive must not take the process down.
  for (const h2 of libraryHttp2Servers(server)) h2.on("session", guardPingAfterDestroy);

  const sessions = server.sessionStream(path, { noAutoPaths: true }).getReader();
  const acceptAll = async () => {
    for (;;) {
      const { value, done } = await sessions.read();
      if (done || !value) return;
      // The library types a session by its WebTransport API only; ServerSession names what it adds.
      const session: ServerSession = value;
      const ticket = session.userData?.ticket;
      const info = ticket ? tickets.get(ticket) : undefined;
      if (ticket) tickets.delete(ticket);
      acceptSession(session, info, options)
        .then((stream) => {
          if (!stream) return;
          tracker.add(stream);
          options.onConnection(stream);
        })
        // onConnection threw: the session must not stay open with nobody serving it.
        .catch((e: unknown) => session.close({ closeCode: ErrorCode.INTERNAL, reason: String(e) }));
    }
  };
  acceptAll().catch(() => undefined); // the session stream ends with an error when the server stops

  const port = (server.address() as { port: number } | null)?.port ?? options.port ?? 0;
  return {
    url: `https://${host.includes(":") ? `[${host}]` : host}:${port}${path}`,
    port,
    http3: useHttp3,
    get connections() {
      return tracker.size;
    },
    async close(graceMs = 1_000) {
      await tracker.closeAll(graceMs);
      server.stopServer();
      await Promise.race([server.closed, new Promise((r) => setTimeout(r, 2_000))]);
    },
  };
}

/** The node:http2 servers inside the library's server (one, or one per protocol with "both"). */
function libraryHttp2Servers(server: object): Http2Server[] {
  const inner = (server as { transportInt?: { transportsInts?: Set<unknown>; serverInt?: Http2Server } }).transportInt;
  const all = inner?.transportsInts ? [...inner.transportsInts] : [inner];
  const found = all
    .map((t) => (t as { serverInt?: Http2Server } | undefined)?.serverInt)
    .filter((h): h is Http2Server => typeof h?.on === "function");
  // The library is pinned (package.json); a version that moves its server must not lose the guard unnoticed.
  if (found.length === 0) throw new Error("@fails-components/webtransport: its HTTP/2 server was not found");
  return found;
}

function serverInit(options: WebTransportServerOptions, host: string, useHttp3: boolean): HttpServerInit {
  return {
    port: options.port ?? 0,
    host,
    secret: randomBytes(16).toString("hex"),
    cert: options.tls.cert,
    privKey: options.tls.key,
    defaultDatagramsReadableMode: "bytes",
    reliability: useHttp3 ? "both" : "reliableOnly",
    ...WT_WINDOWS,
  };
}

/** The CONNECT handler: 404 for another path, otherwise a ticket that says how to treat the session. */
function ticketRequests(options: WebTransportServerOptions, path: string, tickets: Map<string, Ticket>) {
  return async ({ header }: { header: Record<string, string> }) => {
    const reqPath = header[":path"] ?? "/";
    if (reqPath.split("?")[0] !== path) return { status: 404 };
    const ticket = randomBytes(8).toString("hex");
    const codec = codecFromQuery(reqPath);
    const token = transportToken(header.authorization, reqPath);
    if (codec === "invalid")
      tickets.set(ticket, { refuse: ErrorCode.UNSUPPORTED_CODEC, reason: "codec must be proto or msgpack" });
    else if (!(await admit(options.authenticate, token)))
      tickets.set(ticket, { refuse: ErrorCode.UNAUTHENTICATED, reason: "Unauthorized" });
    else tickets.set(ticket, { codec, token });
    return { status: 200, path, userData: { ticket } };
  };
}

/** Closes a refused or unknown session; otherwise waits for its control stream and wraps it. */
async function acceptSession(
  session: ServerSession,
  info: Ticket | undefined,
  options: WebTransportServerOptions,
): Promise<WtStream<DeviceFrame, CloudFrame> | undefined> {
  try {
    await session.ready;
    if (!info || "refuse" in info) {
      const refusal = info ?? { refuse: ErrorCode.PROTOCOL_VIOLATION, reason: "unknown session" };
      session.close({ closeCode: refusal.refuse, reason: refusal.reason });
      return undefined;
    }
    const bidis = session.incomingBidirectionalStreams!.getReader();
    const timeoutMs = options.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs;
    const control = await firstStream(bidis, timeoutMs);
    if (control === "timeout") {
      // PDD-WT-006: no control stream within the handshake timeout (issue 13, item 6: such sessions were kept forever).
      session.close({ closeCode: ErrorCode.TIMEOUT, reason: `no control stream within ${timeoutMs} ms` });
      return undefined;
    }
    if (!control) return undefined;
    const stream = new WtStream<DeviceFrame, CloudFrame>({
      session,
      http2Session: session.objint?.stream?.session,
      pingIntervalMs: options.pingIntervalMs,
      deadPeerTimeoutMs: options.deadPeerTimeoutMs,
      control,
      codec: info.codec,
      inSchema: DeviceFrameSchema,
      outSchema: CloudFrameSchema,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      highWaterMark: options.highWaterMark,
      writeDeadlineMs: options.writeDeadlineMs,
      authToken: info.token,
      remoteAddress: session.peerAddress,
      refusePeerStreams: true,
    });
    // A second bidirectional stream is a violation too (PDD-WT-006).
    bidis.read().then(
      ({ value }) => value && stream.refusePeer("the device opened a second bidirectional stream (PDD-WT-006)"),
      () => undefined,
    );
    return stream;
  } catch {
    return undefined; // the session failed before its control stream opened
  }
}

/** The session's first bidirectional stream, or "timeout" when none opens within `ms`. */
async function firstStream<T>(
  reader: { read(): Promise<{ value?: T; done: boolean }> },
  ms: number,
): Promise<T | undefined | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => {
    timer = setTimeout(() => r("timeout"), ms);
  });
  try {
    return await Promise.race([reader.read().then((r) => r.value), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
