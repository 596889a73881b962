/** `createGrpcServer`: the gRPC binding's server, h2c or TLS (spec §10.3). */
import {
  constants,
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
  FIRST_FRAME_MAX_BYTES,
  DeviceFrameSchema,
  PdDeviceService,
  type CloudFrame,
  type DeviceFrame,
} from "../../proto/index.js";
import { admit, bearerToken } from "../auth.js";
import { keepHttp2SessionAlive } from "../http2-keepalive.js";
import { DEFAULTS, type PddServer, type ServerOptions } from "../message-stream.js";
import { listen, trackConnections } from "../server-util.js";
import { refuseUnauthenticated, sideCalls, trailersOnly } from "./side-calls.js";
import { GrpcStream } from "./stream.js";

export const SESSION_PATH = "/pdd.v1.PdDeviceService/Session";
/** The content types of PDD-GRPC-001: gRPC with the protobuf codec, and Connect's streaming protobuf. */
const CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto", "application/connect+proto"]);

/**
 * PDD-LIMIT-002 on gRPC: the call's first message (the Hello) is held to
 * 64 KiB, judged on its 5-byte prefix before Connect buffers or decodes it
 * (issue 13, item 5: 3.9 MB Hellos without a credential were decoded in
 * full). The tap only watches the bytes Connect reads; a first message over
 * 64 KiB ends the call with RESOURCE_EXHAUSTED (PDD-GRPC-004).
 */
function holdFirstMessage(req: Http2ServerRequest, maxFrameBytes: number): void {
  let prefix = Buffer.alloc(0);
  const tap = (chunk: Buffer) => {
    prefix = Buffer.concat([prefix, chunk.subarray(0, 5 - prefix.length)]);
    if (prefix.length < 5) return;
    req.stream.off("data", tap);
    const length = prefix.readUInt32BE(1);
    // Over the connection's limit, Connect refuses it itself, on the same prefix (readMaxBytes).
    if (length <= FIRST_FRAME_MAX_BYTES || length > maxFrameBytes) return;
    const message = `first message of ${length} bytes; the limit is ${FIRST_FRAME_MAX_BYTES} (PDD-LIMIT-002)`;
    if (!req.stream.headersSent) trailersOnly(req, Code.ResourceExhausted, message);
    req.stream.close(constants.NGHTTP2_CANCEL);
  };
  req.stream.on("data", tap);
}

/**
 * Calls the server ends at once, before authentication and before Connect
 * sees them (PDD-GRPC-007; issue 13, items 6 and 11): a session path with a
 * query string (its credential check was skipped), a content type other than
 * gRPC/Connect protobuf (`application/grpc+json` was served), and a
 * `grpc-encoding` other than identity (such calls were never answered).
 * Returns whether it answered the call.
 */
function refuseMalformedCall(req: Http2ServerRequest, res: Http2ServerResponse): boolean {
  const url = req.url ?? "";
  const q = url.indexOf("?");
  if (q >= 0 && url.slice(0, q) === SESSION_PATH) {
    trailersOnly(req, Code.Unimplemented, "unknown method");
    return true;
  }
  if (url !== SESSION_PATH) return false;
  const contentType = String(req.headers["content-type"] ?? "")
    .split(";")[0]!
    .trim()
    .toLowerCase();
  if (!CONTENT_TYPES.has(contentType)) {
    res.writeHead(415, { "content-type": "text/plain" });
    res.end("unsupported content type");
    return true;
  }
  const encoding = req.headers["grpc-encoding"] ?? req.headers["connect-content-encoding"];
  if (encoding !== undefined && encoding !== "identity") {
    trailersOnly(req, Code.Unimplemented, "only identity encoding is accepted (PDD-GRPC-007)");
    return true;
  }
  return false;
}
/** The call checks the handler runs, in an object so that the conformance tests can take one out. @internal */
export const callChecks = { refuseMalformedCall };

export const HTTP2_WINDOW = 4 << 20;

/**
 * Serves `pdd.v1.PdDeviceService/Session` over HTTP/2 (cleartext h2c, or TLS
 * when `tls` is given), answering both the gRPC and the Connect protocol.
 * Defaults: port 0, the spec's 4 MiB message limit, HTTP/2 PING every 15 s.
 */
export async function createGrpcServer(options: ServerOptions): Promise<PddServer> {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const side = sideCalls(options);
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
            writeDeadlineMs: options.writeDeadlineMs,
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
      if (side.handles(req.url)) return side.handle(req, res);
      if (callChecks.refuseMalformedCall(req, res)) return;
      if (req.url === SESSION_PATH) holdFirstMessage(req, maxFrameBytes);
      if (req.url === SESSION_PATH) {
        const token = bearerToken(req.headers.authorization);
        if (!(await admit(options.authenticate, token))) return refuseUnauthenticated(req, res);
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
      side.closing();
      await tracker.closeAll(graceMs);
      await side.closed(graceMs);
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => http2.close(() => resolve()));
    },
  };
}
