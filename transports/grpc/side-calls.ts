/**
 * The gRPC listener's calls besides the P/D session: grpc.health.v1 (open to
 * probes) and server reflection, v1 and v1alpha (with an authenticate hook,
 * only for a caller with an accepted key: the schema goes to whoever may open
 * a session). They run on a Connect adapter of their own whose messages are
 * held to 4 KiB: their requests are a name or two.
 */
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Stream } from "node:http2";
import { Code } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { admit, bearerToken } from "../auth.js";
import { type ServerOptions, servingState } from "../message-stream.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "./gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type HealthSource, healthService } from "./health.js";
import { Reflector, reflectionService, reflectionServiceV1alpha } from "./reflection.js";

const SIDE_PATH = /^\/grpc\.(health\.v1\.Health|reflection\.v1(alpha)?\.ServerReflection)\//;
export const SIDE_MAX_MESSAGE_BYTES = 4096;

export interface SideCalls {
  handles(url: string | undefined): boolean;
  handle(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void>;
  /** The server begins to close: health says NOT_SERVING, and Watch calls say so and end. */
  closing(): void;
  /** Resolves once the open side calls have ended, or after `graceMs`. */
  closed(graceMs: number): Promise<void>;
}

export function sideCalls(options: Pick<ServerOptions, "serving" | "authenticate">): SideCalls {
  let closing = false;
  const closed = servingState(true);
  const health: HealthSource = {
    serving: () => (options.serving?.serving ?? true) && !closing,
    closing: () => closing,
    onChange(listener) {
      const offServing = options.serving?.onChange(listener);
      const offClosed = closed.onChange(listener);
      return () => {
        offServing?.();
        offClosed();
      };
    },
  };
  const adapter = sideAdapter(health);
  /** Open side calls: close() lets Watch calls send NOT_SERVING and end before it cuts the connections. */
  const streams = new Set<ServerHttp2Stream>();
  return {
    handles: (url) => url !== undefined && SIDE_PATH.test(url),
    async handle(req, res) {
      if (req.url?.startsWith("/grpc.reflection.") && !(await admitStrictly(options, req)))
        return refuseUnauthenticated(req, res);
      streams.add(req.stream);
      req.stream.once("close", () => streams.delete(req.stream));
      adapter(req, res);
    },
    closing() {
      closing = true;
      closed.set(false);
    },
    closed: (graceMs) => streamsClosed(streams, graceMs),
  };
}

function sideAdapter(health: HealthSource) {
  const reflector = new Reflector();
  return connectNodeAdapter({
    grpc: true,
    connect: true,
    grpcWeb: false,
    acceptCompression: [],
    readMaxBytes: SIDE_MAX_MESSAGE_BYTES,
    routes(router) {
      router.service(Health, healthService(health));
      router.service(ServerReflection, reflectionService(reflector));
      router.service(ServerReflectionV1alpha, reflectionServiceV1alpha(reflector));
    },
  });
}

/**
 * Reflection's credential check: with an authenticate hook, a token is needed
 * and must be accepted. (A session may bring its token in the Hello instead,
 * so the hook lets a missing one through; reflection has no Hello.)
 */
async function admitStrictly(options: Pick<ServerOptions, "authenticate">, req: Http2ServerRequest): Promise<boolean> {
  if (!options.authenticate) return true;
  const token = bearerToken(req.headers.authorization);
  return token !== undefined && (await admit(options.authenticate, token));
}

/** Resolves once every stream in `streams` has closed, or after `ms`. */
async function streamsClosed(streams: Set<ServerHttp2Stream>, ms: number): Promise<void> {
  const open = [...streams].filter((s) => !s.closed);
  if (open.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(open.map((s) => new Promise((resolve) => s.once("close", resolve)))),
    new Promise((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

/** A trailers-only gRPC response: one HEADERS frame with END_STREAM. */
export function trailersOnly(req: Http2ServerRequest, status: number, message: string): void {
  req.stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": String(status), "grpc-message": message },
    { endStream: true },
  );
}

/** UNAUTHENTICATED in the call's protocol: a trailers-only gRPC status, or Connect's HTTP 401 with a JSON error. */
export function refuseUnauthenticated(req: Http2ServerRequest, res: Http2ServerResponse): void {
  if (String(req.headers["content-type"] ?? "").startsWith("application/grpc")) {
    trailersOnly(req, Code.Unauthenticated, "Unauthorized");
    return;
  }
  res.writeHead(401, { "content-type": "application/json" });
  res.end(JSON.stringify({ code: "unauthenticated", message: "Unauthorized" }));
}
