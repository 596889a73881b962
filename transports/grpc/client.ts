/** `connectGrpc`: the gRPC binding's client (spec §10.3). */
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  CloudFrameSchema,
  DEFAULT_MAX_FRAME_BYTES,
  DeviceFrameSchema,
  PdDeviceService,
  type CloudFrame,
  type DeviceFrame,
} from "../../proto/index.js";
import { DEFAULTS, type ClientOptions, type DeviceStream } from "../message-stream.js";
import { parseEndpoint } from "../url.js";
import { GrpcStream } from "./stream.js";

/**
 * How long a closed connection (a half-close) waits for the cloud to end the
 * call before it cancels it (PDD-CONN-023, PDD-GRPC-006). A field, not a
 * constant, so that the conformance tests can build a device that never
 * cancels. @internal
 */
export const grpcClientTiming = { callEndGraceMs: 1_000 };

export interface GrpcClientOptions extends ClientOptions {
  /** Wire protocol: "grpc" (default) or "connect". */
  protocol?: "grpc" | "connect";
}

/**
 * Opens a PDD connection to a grpc:// (h2c) or grpcs:// URL: one call of
 * pdd.v1.PdDeviceService/Session. The call starts at once; a refused
 * credential shows as the stream closing with UNAUTHENTICATED.
 */
export async function connectGrpc(url: string, options: GrpcClientOptions = {}): Promise<DeviceStream> {
  const ep = parseEndpoint(url);
  const baseUrl = `${ep.tls ? "https" : "http"}://${ep.host.includes(":") ? `[${ep.host}]` : ep.host}:${ep.port}`;
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const interval = options.pingIntervalMs ?? DEFAULTS.pingIntervalMs;
  const transportOptions = {
    baseUrl,
    httpVersion: "2" as const,
    acceptCompression: [], // PDD-GRPC-005
    nodeOptions: { ...(options.ca ? { ca: options.ca } : {}) },
    readMaxBytes: maxFrameBytes,
    writeMaxBytes: Math.max(maxFrameBytes, 64 << 20),
    pingIntervalMs: interval,
    pingTimeoutMs: Math.max(1, (options.deadPeerTimeoutMs ?? DEFAULTS.deadPeerTimeoutMs) - interval),
    pingIdleConnection: true,
  };
  // One HTTP/2 session per PDD connection, closed with it: a cloud that keeps
  // its side open must not keep the device's process alive (issue 16).
  const sessionManager = new Http2SessionManager(
    baseUrl,
    {
      pingIntervalMs: transportOptions.pingIntervalMs,
      pingTimeoutMs: transportOptions.pingTimeoutMs,
      pingIdleConnection: true,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    },
    transportOptions.nodeOptions,
  );
  const withSession = { ...transportOptions, sessionManager };
  const transport =
    options.protocol === "connect" ? createConnectTransport(withSession) : createGrpcTransport(withSession);
  const client = createClient(PdDeviceService, transport);
  const stream = new GrpcStream<CloudFrame, DeviceFrame>({
    inSchema: CloudFrameSchema,
    outSchema: DeviceFrameSchema,
    highWaterMark: options.highWaterMark,
    writeDeadlineMs: options.writeDeadlineMs,
    maxFrameBytes,
    remoteAddress: url,
    client: true,
  });
  const abort = new AbortController();
  stream.cancelCall = (reason) => abort.abort(reason);
  const responses = client.session(stream.outgoingMessages(), {
    headers: options.authToken ? { authorization: `Bearer ${options.authToken}` } : {},
    signal: abort.signal,
  });
  const pumped = stream
    .pump(responses)
    .then(() => stream.peerEnded(undefined))
    .catch((e: unknown) => stream.peerEnded(ConnectError.from(e)));
  // Our close is a half-close. The session goes once the cloud has ended the call; a cloud that has not
  // within 1 s gets a cancel (RST_STREAM CANCEL) first (PDD-CONN-023, PDD-GRPC-006).
  void stream.closed.then(async () => {
    let grace: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => (grace = setTimeout(() => r("late"), grpcClientTiming.callEndGraceMs)));
    grace?.unref();
    const ended = await Promise.race([pumped, late]);
    clearTimeout(grace);
    if (ended === "late") abort.abort("the cloud did not end the call within 1 s of the half-close");
    setImmediate(() => sessionManager.abort());
  });
  return stream;
}
