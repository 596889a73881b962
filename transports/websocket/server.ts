/** `createWebSocketServer`: the WebSocket binding's server (spec §10.2). */
import { createServer as createHttpServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import {
  CloudFrameSchema,
  DeviceFrameSchema,
  DEFAULT_MAX_FRAME_BYTES,
  FIRST_FRAME_MAX_BYTES,
  type CloudFrame,
  type DeviceFrame,
} from "../../proto/index.js";
import { admit, transportToken } from "../auth.js";
import type { PddServer, ServerOptions } from "../message-stream.js";
import { listen, trackConnections } from "../server-util.js";
import { codecFromSubprotocol, SUBPROTOCOLS } from "./subprotocols.js";
import { WsStream } from "./stream.js";
import { assertWsMessageLimitWorks } from "./message-limit.js";

export interface WebSocketServerOptions extends ServerOptions {
  /** URL path to serve; default "/pdd". */
  path?: string;
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  );
}

/**
 * Serves PDD over WebSocket. Defaults: port 0 (any), path "/pdd", the spec's
 * 4 MiB frame limit, no compression, pings every 15 s, a peer silent 30 s is lost.
 */
export async function createWebSocketServer(options: WebSocketServerOptions): Promise<PddServer> {
  const path = options.path ?? "/pdd";
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  assertWsMessageLimitWorks(); // before listening: the Hello limit depends on ws internals
  const http: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key })
    : createHttpServer();
  http.on("request", (_req, res) => {
    res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" }).end("PDD speaks WebSocket here\n");
  });
  const wss = new WebSocketServer({
    noServer: true,
    // The Hello is held to 64 KiB, judged on the frame header before ws buffers it (PDD-LIMIT-002); each
    // stream raises its own limit to maxFrameBytes once the first message is in.
    maxPayload: Math.min(FIRST_FRAME_MAX_BYTES, maxFrameBytes),
    perMessageDeflate: false,
    clientTracking: false,
  });
  const tracker = trackConnections<WsStream<DeviceFrame, CloudFrame>>();

  http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      const url = req.url ?? "/";
      if (url.split("?")[0] !== path) return refuse(socket, 404, "Not Found");
      const offered = String(req.headers["sec-websocket-protocol"] ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const chosen = offered.find((p) => codecFromSubprotocol(p) !== undefined);
      if (!chosen) return refuse(socket, 400, `Bad Request: offer one of the subprotocols ${SUBPROTOCOLS.join(", ")}`); // PDD-WS-001
      const token = transportToken(req.headers.authorization, url);
      if (!(await admit(options.authenticate, token))) return refuse(socket, 401, "Unauthorized"); // PDD-WS-006
      wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = new WsStream<DeviceFrame, CloudFrame>({
          ws,
          codec: codecFromSubprotocol(chosen)!,
          inSchema: DeviceFrameSchema,
          outSchema: CloudFrameSchema,
          maxFrameBytes,
          firstFrameMaxBytes: FIRST_FRAME_MAX_BYTES,
          highWaterMark: options.highWaterMark,
          writeDeadlineMs: options.writeDeadlineMs,
          pingIntervalMs: options.pingIntervalMs,
          deadPeerTimeoutMs: options.deadPeerTimeoutMs,
          authToken: token,
          remoteAddress: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
        });
        tracker.add(stream);
        options.onConnection(stream);
      });
    })().catch(() => socket.destroy());
  });
  // ws selects the subprotocol we decided on in the upgrade handler.
  wss.options.handleProtocols = (protocols: Set<string>) =>
    [...protocols].find((p) => codecFromSubprotocol(p) !== undefined) ?? false;

  const port = await listen(http, options.host ?? "127.0.0.1", options.port ?? 0);
  const host = options.host ?? "127.0.0.1";
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `${options.tls ? "wss" : "ws"}://${shownHost}:${port}${path}`,
    port,
    get connections() {
      return tracker.size;
    },
    async close(graceMs = 1_000) {
      await tracker.closeAll(graceMs);
      await new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections?.();
    },
  };
}
