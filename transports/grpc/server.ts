/** `createGrpcServer`: the gRPC binding's server, h2c or TLS (spec §10.3). */
import {
  createSecureServer,
  createServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  CloudFrameSchema,
  DEFAULT_MAX_FRAME_BYTES,
  DeviceFrameSchema,
  PdDeviceService,
  type CloudFrame,
  type DeviceFrame,
} from "../../proto/index.js";
import { admit, bearerToken } from "../auth.js";
import { keepHttp2SessionAlive } from "../http2-keepalive.js";
import { DEFAULTS, type PddServer, type ServerOptions } from "../message-stream.js";
import { listen, trackConnections } from "../server-util.js";
import { GrpcStream } from "./stream.js";

export const SESSION_PATH = "/pdd.v1.PdDeviceService/Session";
export const HTTP2_WINDOW = 4 << 20;

/**
 * Serves `pdd.v1.PdDeviceService/Session` over HTTP/2 (cleartext h2c, or TLS
 * when `tls` is given), answering both the gRPC and the Connect protocol.
 * Defaults: port 0, the spec's 4 MiB message limit, HTTP/2 PING every 15 s.
 */
export async function createGrpcServer(options: ServerOptions): Promise<PddServer> {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const tracker = trackConnections<GrpcStream<DeviceFrame, CloudFrame>>();
  const adapter = connectNodeAdapter({
    grpc: true,
    connect: true,
    grpcWeb: false,
    // Identity only (PDD-GRPC-005): KV bytes do not compress, and gzip next to secrets leaks lengths.
    acceptCompression: [],
    readMaxBytes: maxFrameBytes,
    writeMaxBytes: Math.max(maxFrameBytes, 64 << 20),
    routes(router) {
      router.service(PdDeviceService, {
        session(requests: AsyncIterable<DeviceFrame>, ctx: HandlerContext) {
          const stream = new GrpcStream<DeviceFrame, CloudFrame>({
            inSchema: DeviceFrameSchema,
            outSchema: CloudFrameSchema,
            highWaterMark: options.highWaterMark,
            maxFrameBytes,
            authToken: bearerToken(ctx.requestHeader.get("authorization") ?? undefined),
          });
          ctx.signal.addEventListener(
            "abort",
            () => stream.peerEnded(new ConnectError("call cancelled by the peer", Code.Canceled)),
            { once: true },
          );
          void stream.pump(requests, { cancelled: () => ctx.signal.aborted });
          tracker.add(stream);
          options.onConnection(stream);
          return stream.outgoingMessages();
        },
      });
    },
  });

  // Authentication happens before Connect sees the call, so a refused call
  // gets a trailers-only UNAUTHENTICATED at once (PDD-GRPC-002).
  const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => {
    void (async () => {
      if (req.url === SESSION_PATH) {
        const token = bearerToken(req.headers.authorization);
        if (!(await admit(options.authenticate, token))) {
          const grpc = String(req.headers["content-type"] ?? "").startsWith("application/grpc");
          if (grpc) {
            // A real trailers-only response: one HEADERS frame with END_STREAM.
            req.stream.respond(
              {
                ":status": 200,
                "content-type": "application/grpc",
                "grpc-status": "16",
                "grpc-message": "Unauthorized",
              },
              { endStream: true },
            );
          } else {
            res.writeHead(401, { "content-type": "application/json" });
            res.end(JSON.stringify({ code: "unauthenticated", message: "Unauthorized" }));
          }
          return;
        }
      }
      adapter(req, res);
    })();
  };
  // 4 MiB stream windows: enough for a KV chunk in flight, small enough that a
  // reader that stops makes the sender wait soon.
  const settings = { initialWindowSize: HTTP2_WINDOW };
  const http2: Http2Server = options.tls
    ? createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: false, settings }, handler)
    : createServer({ settings }, handler);
  const interval = options.pingIntervalMs ?? DEFAULTS.pingIntervalMs;
  const deadAfter = options.deadPeerTimeoutMs ?? DEFAULTS.deadPeerTimeoutMs;
  const sessions = new Set<import("node:http2").Http2Session>();
  http2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    keepHttp2SessionAlive(session, interval, Math.max(1, deadAfter - interval));
  });
  const host = options.host ?? "127.0.0.1";
  const port = await listen(http2, host, options.port ?? 0);
  return {
    url: `${options.tls ? "grpcs" : "grpc"}://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    get connections() {
      return tracker.size;
    },
    async close(graceMs = 1_000) {
      await tracker.closeAll(graceMs);
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => http2.close(() => resolve()));
    },
  };
}
