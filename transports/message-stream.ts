/**
 * The one interface every transport binding implements (spec/10-transports.md).
 *
 * A MessageStream is one PDD connection seen from one side. It exists so that
 * the peers and the conformance suite never depend on which transport carries
 * the frames: they send and receive typed envelopes, and the binding does the
 * rest (codec, delimiting, keep-alive, KV streams, close codes).
 */
import {
  WRITE_DEADLINE_MS,
  type CloudFrame,
  type CodecName,
  type DeviceFrame,
  type ErrorCode,
} from "../proto/index.js";

export type TransportName = "websocket" | "grpc" | "webtransport" | "memory";

export interface CloseInfo {
  /** Who ended the connection. */
  initiator: "local" | "peer";
  /** True when it ended without a close handshake (loss, reset, keep-alive timeout). */
  abrupt: boolean;
  /** The PDD error code the close carried; ERROR_CODE_UNSPECIFIED for a normal close. */
  code: ErrorCode;
  reason: string;
}

export interface SendOptions {
  /**
   * Marks a KV chunk of one request. Bindings with several streams
   * (WebTransport) carry it on that request's KV stream, so it never delays
   * control frames; `last` closes that stream. Aborting `signal` abandons the
   * transfer early (takeover, cancel): WebTransport resets the stream with
   * CANCELLED (PDD-WT-004) and drops the request's later KV frames. Bindings
   * with one stream ignore all of it: their KV chunks queue with the rest.
   */
  bulk?: { requestId: number; last?: boolean; signal?: AbortSignal };
}

/**
 * Binding-specific extras (WebTransport's KV streams) travel as SendOptions,
 * and test hooks (sending malformed bytes) live on the bindings' classes
 * (transports/test/raw.ts), so that this contract stays small.
 */
export interface MessageStream<In, Out> {
  readonly transport: TransportName;
  readonly codec: CodecName;
  /** The credential the transport carried (Authorization header or access_token), if any. */
  readonly authToken: string | undefined;
  readonly remoteAddress: string | undefined;
  /**
   * Queues a frame. Resolves once the stream's buffered bytes are below its
   * high-water mark again: awaiting every send bounds the sender's memory.
   * Rejects with PddError(ERR_CLOSED) after close.
   */
  send(message: Out, options?: SendOptions): Promise<void>;
  /** Bytes queued for sending and not yet handed to the operating system. */
  readonly bufferedAmount: number;
  /**
   * The received frames, in order. A frame that fails to decode makes the
   * iterator throw a PddError (MALFORMED_FRAME or FRAME_TOO_LARGE); frames with
   * no known body (`body.case` undefined) are delivered: the peer ignores them,
   * except as a first frame (PDD-VER-006, PDD-CONN-002). Ends when the connection closes, or
   * earlier when the peer will send nothing more but the connection stays open for
   * sending (a gRPC device's half-close, PDD-CONN-026): `closed` then has not resolved.
   */
  [Symbol.asyncIterator](): AsyncIterator<In>;
  /**
   * Calls `listener` with each frame as it is received, before it is queued
   * for the iterator: a peer counts what arrives, however far behind its
   * reading is (a Ping flood, PDD-DOS-001). The frame is delivered to the
   * iterator too; frames received before the call are not replayed.
   */
  onArrival(listener: (frame: In) => void): void;
  /** Graceful close carrying a PDD error code (UNSPECIFIED = normal) and reason. */
  close(code?: ErrorCode, reason?: string): Promise<void>;
  /** Immediate teardown without a close handshake. */
  abort(reason?: string): void;
  /** Resolves once, when the connection is closed for any reason. */
  readonly closed: Promise<CloseInfo>;
  onClose(listener: (info: CloseInfo) => void): void;
}

/** The device's end of a connection. */
export type DeviceStream = MessageStream<CloudFrame, DeviceFrame>;
/** The cloud's end of a connection. */
export type CloudStream = MessageStream<DeviceFrame, CloudFrame>;

export interface PddServer {
  /** The URL a client connects to, e.g. ws://127.0.0.1:4100/pdd. */
  readonly url: string;
  readonly port: number;
  /** Connections currently open. */
  readonly connections: number;
  /** Stops accepting, closes open connections (abruptly after `graceMs`), frees the port. */
  close(graceMs?: number): Promise<void>;
}

/** Settings every server binding accepts. */
export interface ServerOptions {
  host?: string;
  /** 0 = any free port (default). */
  port?: number;
  tls?: { cert: string; key: string };
  /** Largest frame accepted, bytes. Default: spec default (4 MiB). */
  maxFrameBytes?: number;
  /**
   * Called with the credential the transport carried (undefined if none)
   * before a connection is accepted; returning false refuses it with the
   * binding's UNAUTHENTICATED (HTTP 401, gRPC status 16). Default: accept all.
   */
  authenticate?: (token: string | undefined) => boolean | Promise<boolean>;
  /** A connection that has not begun (WebTransport: opened its control stream) within this is closed, ms. Default 10,000. */
  handshakeTimeoutMs?: number;
  /** Keep-alive ping interval, ms. Default 15,000. */
  pingIntervalMs?: number;
  /** A peer silent this long after a ping is lost, ms. Default 30,000. */
  deadPeerTimeoutMs?: number;
  /** Send-side high-water mark, bytes. Default 1 MiB. */
  highWaterMark?: number;
  /** A blocked sender whose peer takes no byte for this long ends the connection with TIMEOUT, ms. Default 10,000. */
  writeDeadlineMs?: number;
  /** gRPC only: whether grpc.health.v1 Check says SERVING (a draining server says NOT_SERVING). Default: until close(). */
  serving?: () => boolean;
  onConnection(stream: CloudStream): void;
}

/** Settings every client binding accepts. */
export interface ClientOptions {
  codec?: CodecName;
  authToken?: string;
  /** PEM CA certificate(s) to trust, for self-signed servers. */
  ca?: string;
  /** WebTransport only: SHA-256 hashes of pinned server certificates. */
  serverCertificateHashes?: Uint8Array[];
  maxFrameBytes?: number;
  pingIntervalMs?: number;
  deadPeerTimeoutMs?: number;
  highWaterMark?: number;
  /** A blocked sender whose peer takes no byte for this long ends the connection with TIMEOUT, ms. Default 10,000. */
  writeDeadlineMs?: number;
  /** Connection attempt timeout, ms. Default 10,000. */
  connectTimeoutMs?: number;
}

export const DEFAULTS = {
  pingIntervalMs: 15_000,
  deadPeerTimeoutMs: 30_000,
  highWaterMark: 1 << 20,
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  /** A sender blocked on the high-water mark with no byte leaving for this long ends the connection (TIMEOUT). */
  writeDeadlineMs: WRITE_DEADLINE_MS,
} as const;
