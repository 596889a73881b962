/** `connectWebSocket`: the WebSocket binding's client (spec §10.2). */
import WebSocket from "ws";
import {
  CloudFrameSchema,
  DeviceFrameSchema,
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  PddError,
  type CloudFrame,
  type DeviceFrame,
} from "../../proto/index.js";
import { DEFAULTS, type ClientOptions, type DeviceStream } from "../message-stream.js";
import { subprotocolFor } from "./subprotocols.js";
import { WsStream } from "./stream.js";

/** Opens a PDD connection to a ws:// or wss:// URL. Codec default: proto. */
export function connectWebSocket(url: string, options: ClientOptions = {}): Promise<DeviceStream> {
  const codec = options.codec ?? "proto";
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [subprotocolFor(codec)], {
      headers: options.authToken ? { authorization: `Bearer ${options.authToken}` } : {},
      ca: options.ca,
      maxPayload: maxFrameBytes,
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    });
    ws.once("unexpected-response", (_req, res) => {
      const status = res.statusCode ?? 0;
      ws.terminate();
      const code =
        status === 401
          ? ErrorCode.UNAUTHENTICATED
          : status === 400
            ? ErrorCode.UNSUPPORTED_CODEC
            : ErrorCode.UNAVAILABLE;
      reject(new PddError(code, `WebSocket upgrade to ${url} refused with HTTP ${status}`));
    });
    ws.once("error", (err) =>
      reject(
        new PddError(ErrorCode.UNAVAILABLE, `cannot connect to ${url}: ${err.message}`, {
          retryable: true,
          cause: err,
        }),
      ),
    );
    ws.once("open", () => {
      if (ws.protocol !== subprotocolFor(codec)) {
        ws.terminate();
        reject(new PddError(ErrorCode.UNSUPPORTED_CODEC, `server selected subprotocol "${ws.protocol}"`));
        return;
      }
      resolve(
        new WsStream<CloudFrame, DeviceFrame>({
          ws,
          codec,
          inSchema: CloudFrameSchema,
          outSchema: DeviceFrameSchema,
          maxFrameBytes,
          highWaterMark: options.highWaterMark,
          writeDeadlineMs: options.writeDeadlineMs,
          pingIntervalMs: options.pingIntervalMs,
          deadPeerTimeoutMs: options.deadPeerTimeoutMs,
          remoteAddress: url,
        }),
      );
    });
  });
}
