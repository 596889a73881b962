/**
 * `createWebTransportServer`: the WebTransport binding's server (spec §10.4).
 * It serves WebTransport over HTTP/2 (pure JS, works everywhere) and, when
 * the optional native module is installed, over HTTP/3 as well.
 */
import { randomBytes } from "node:crypto";
import type { Http2Session } from "node:http2";
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

export async function createWebTransportServer(
  options: WebTransportServerOptions,
): Promise<PddServer & { http3: boolean }> {
  const { wt, http3Available } = await loadWebTransport();
  const path = options.path ?? "/pdd/v1";
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const host = options.host ?? "127.0.0.1";
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs;
  const useHttp3 = options.protocols === "both" && http3Available;
  const args = {
    port: options.port ?? 0,
    host,
    secret: randomBytes(16).toString("hex"),
    cert: options.tls.cert,
    privKey: options.tls.key,
    defaultDatagramsReadableMode: "bytes" as const,
    reliability: useHttp3 ? ("both" as const) : ("reliableOnly" as const),
    ...WT_WINDOWS,
  };
  const server = useHttp3 ? new wt.HttpServer(args as never) : new wt.Http2Server(args as never);
  const tracker = trackConnections<WtStream<DeviceFrame, CloudFrame>>();
  // WebTransport clients cannot read the HTTP status of a refused CONNECT, so
  // refusals are sessions closed at once with the PDD code (PDD-WT-001/005).
  const pending = new Map<
    string,
    { codec: CodecName; token: string | undefined } | { refuse: ErrorCode; reason: string }
  >();

  server.setRequestCallback(async ({ header }: { header: Record<string, string> }) => {
    const reqPath = header[":path"] ?? "/";
    if (reqPath.split("?")[0] !== path) return { status: 404 };
    const ticket = randomBytes(8).toString("hex");
    const codec = codecFromQuery(reqPath);
    const token = transportToken(header.authorization, reqPath);
    if (codec === "invalid")
      pending.set(ticket, { refuse: ErrorCode.UNSUPPORTED_CODEC, reason: "codec must be proto or msgpack" });
    else if (!(await admit(options.authenticate, token)))
      pending.set(ticket, { refuse: ErrorCode.UNAUTHENTICATED, reason: "Unauthorized" });
    else pending.set(ticket, { codec, token });
    return { status: 200, path, userData: { ticket } };
  });
  server.startServer();
  await server.ready;

  const sessions = server.sessionStream(path, { noAutoPaths: true }).getReader();
  void (async () => {
    for (;;) {
      const { value, done } = await sessions.read();
      if (done || !value) return;
      void accept(value as unknown as WtSession & { userData?: { ticket?: string }; peerAddress?: string });
    }
  })();

  async function accept(
    session: WtSession & {
      userData?: { ticket?: string };
      peerAddress?: string;
      incomingBidirectionalStreams?: { getReader(): { read(): Promise<{ value?: WtBidi; done: boolean }> } };
    },
  ): Promise<void> {
    const ticket = session.userData?.ticket;
    const info = ticket ? pending.get(ticket) : undefined;
    if (ticket) pending.delete(ticket);
    try {
      await session.ready;
      if (!info) return session.close({ closeCode: ErrorCode.PROTOCOL_VIOLATION, reason: "unknown session" });
      if ("refuse" in info) return session.close({ closeCode: info.refuse, reason: info.reason });
      const bidis = session.incomingBidirectionalStreams!.getReader();
      const control = await firstStream(bidis, handshakeTimeoutMs);
      if (control === "timeout") {
        // PDD-WT-006: no control stream within the handshake timeout (issue 13, item 6: such sessions were kept forever).
        return session.close({
          closeCode: ErrorCode.TIMEOUT,
          reason: `no control stream within ${handshakeTimeoutMs} ms`,
        });
      }
      if (!control) return;
      const stream = new WtStream<DeviceFrame, CloudFrame>({
        session,
        http2Session: (session as unknown as { objint?: { stream?: { session?: Http2Session } } }).objint?.stream
          ?.session,
        pingIntervalMs: options.pingIntervalMs,
        deadPeerTimeoutMs: options.deadPeerTimeoutMs,
        control,
        codec: info.codec,
        inSchema: DeviceFrameSchema,
        outSchema: CloudFrameSchema,
        maxFrameBytes,
        highWaterMark: options.highWaterMark,
        writeDeadlineMs: options.writeDeadlineMs,
        authToken: info.token,
        remoteAddress: session.peerAddress,
        refusePeerStreams: true,
      });
      // A second bidirectional stream is a violation too (PDD-WT-006).
      void bidis.read().then(
        ({ value }) => value && stream.refusePeer("the device opened a second bidirectional stream (PDD-WT-006)"),
        () => undefined,
      );
      tracker.add(stream);
      options.onConnection(stream);
    } catch {
      // the session failed before its control stream opened
    }
  }

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

/** The session's first bidirectional stream, or "timeout" when none opens within `ms`. */
async function firstStream<T>(
  reader: { read(): Promise<{ value?: T; done: boolean }> },
  ms: number,
): Promise<T | undefined | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
  try {
    return await Promise.race([reader.read().then((r) => r.value), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
