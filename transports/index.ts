/**
 * Public surface of transports/: one MessageStream interface and its
 * bindings (WebSocket, gRPC via Connect, WebTransport), an in-memory pair,
 * URL dispatch and local TLS helpers.
 */
import { ErrorCode, PddError } from "../proto/index.js";
import type { ClientOptions, DeviceStream } from "./message-stream.js";
import { connectGrpc } from "./grpc/index.js";
import { parseEndpoint } from "./url.js";
import { connectWebSocket } from "./websocket/index.js";
import { connectWebTransport } from "./webtransport/index.js";

export * from "./message-stream.js";
export {
  createWebSocketServer,
  connectWebSocket,
  SUBPROTOCOLS,
  subprotocolFor,
  type WebSocketServerOptions,
} from "./websocket/index.js";
export { createGrpcServer, connectGrpc, SESSION_PATH, type GrpcClientOptions } from "./grpc/index.js";
export {
  createWebTransportServer,
  connectWebTransport,
  loadWebTransport,
  type WebTransportServerOptions,
  type WebTransportClientOptions,
} from "./webtransport/index.js";
export { createLinkedPair } from "./memory/linked-pair.js";
export { parseEndpoint, URL_SCHEMES, type Endpoint } from "./url.js";
export { createSelfSignedCertificate, certificateSha256, type SelfSignedCertificate } from "./tls.js";
export { wsCloseCode, grpcStatus, fromWsCloseCode, fromGrpcStatus } from "./error-mapping.js";
export { startNetem, type Netem, type NetemOptions } from "./netem.js";

/** Connects to a cloud; the URL's scheme picks the binding (spec §10.1). */
export async function connect(url: string, options: ClientOptions = {}): Promise<DeviceStream> {
  const ep = parseEndpoint(url);
  switch (ep.transport) {
    case "websocket":
      return connectWebSocket(url, options);
    case "grpc":
      if (options.codec && options.codec !== "proto") {
        throw new PddError(ErrorCode.UNSUPPORTED_CODEC, "the gRPC binding carries only the proto codec (spec §9.1)");
      }
      return connectGrpc(url, options);
    case "webtransport":
      return connectWebTransport(url, options);
  }
}
