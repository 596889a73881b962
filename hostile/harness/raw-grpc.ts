/**
 * gRPC calls written with node:http2 directly, for the attacks a gRPC library
 * will not make: a zero flow-control window, RST_STREAM, `grpc-encoding`, a
 * `:path` with a query, `application/grpc+json`.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { WaitQueue } from "../../conformance/raw-client.js";

export const SESSION_PATH = "/pdd.v1.PdDeviceService/Session";

/** One HTTP/2 connection; `windowBytes: 0` means the cloud may send no DATA at all (a reader that never reads). */
export function grpcConnection(url: string, o: { windowBytes?: number } = {}): ClientHttp2Session {
  const u = new URL(url);
  const session = connect(`http://${u.host}`, {
    settings: o.windowBytes === undefined ? {} : { initialWindowSize: o.windowBytes },
  });
  session.on("error", () => undefined);
  return session;
}

export interface CallOptions {
  path?: string;
  contentType?: string;
  token?: string;
  encoding?: string;
}

export interface RawCall {
  stream: ClientHttp2Stream;
  /** Length-prefixed gRPC messages received (DATA, deframed). */
  messages: WaitQueue<Uint8Array>;
  /** The first grpc-status seen (trailers-only headers or trailers), or "closed" when the stream ended without one. */
  status: Promise<string>;
  /** Response headers, once they came. */
  headers: Promise<Record<string, unknown>>;
  /** Writes one message with the gRPC 5-byte prefix; `compressed` sets the flag byte. */
  send(message: Uint8Array, compressed?: boolean): void;
  /** Resets the stream (RST_STREAM CANCEL): the client is gone without a half-close. */
  reset(): void;
}

export function grpcCall(session: ClientHttp2Session, o: CallOptions = {}): RawCall {
  const stream = session.request({
    ":method": "POST",
    ":path": o.path ?? SESSION_PATH,
    "content-type": o.contentType ?? "application/grpc+proto",
    te: "trailers",
    ...(o.encoding ? { "grpc-encoding": o.encoding } : {}),
    ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
  });
  stream.on("error", () => undefined);
  const messages = new WaitQueue<Uint8Array>();
  let buf = Buffer.alloc(0);
  stream.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const n = buf.readUInt32BE(1);
      messages.push(new Uint8Array(buf.subarray(5, 5 + n)));
      buf = buf.subarray(5 + n);
    }
  });
  const headers = new Promise<Record<string, unknown>>((r) => stream.once("response", (h) => r(h)));
  const status = new Promise<string>((resolve) => {
    stream.once("response", (h) => {
      if (h["grpc-status"] !== undefined) resolve(String(h["grpc-status"]));
    });
    stream.once("trailers", (t) => resolve(String(t["grpc-status"] ?? "none")));
    stream.once("close", () => resolve("closed"));
  });
  return {
    stream,
    messages,
    status,
    headers,
    send(message, compressed = false) {
      const prefix = Buffer.alloc(5);
      prefix[0] = compressed ? 1 : 0;
      prefix.writeUInt32BE(message.length, 1);
      stream.write(Buffer.concat([prefix, Buffer.from(message)]));
    },
    reset() {
      stream.close(constants.NGHTTP2_CANCEL);
    },
  };
}
