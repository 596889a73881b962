/** `connectGrpc`: the gRPC binding's client (spec §10.3). */
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
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
  const transport =
    options.protocol === "connect" ? createConnectTransport(transportOptions) : createGrpcTransport(transportOptions);
  const client = createClient(PdDeviceService, transport);
  const stream = new GrpcStream<CloudFrame, DeviceFrame>({
    inSchema: CloudFrameSchema,
    outSchema: DeviceFrameSchema,
    highWaterMark: options.highWaterMark,
    writeDeadlineMs: options.writeDeadlineMs,
    maxFrameBytes,
    remoteAddress: url,
  });
  const abort = new AbortController();
  stream.cancelCall = (reason) => abort.abort(reason);
  const responses = client.session(stream.outgoingMessages(), {
    headers: options.authToken ? { authorization: `Bearer ${options.authToken}` } : {},
    signal: abort.signal,
  });
  void stream
    .pump(responses)
    .then(() => stream.peerEnded(undefined))
    .catch((e: unknown) => stream.peerEnded(ConnectError.from(e)));
  return stream;
}
