/**
 * A MessageStream over one gRPC/Connect bidi call (spec §10.3). Connect
 * encodes and decodes the messages, so this binding moves typed envelopes:
 * an outgoing queue feeds the call's async iterable, and each message's send
 * settles when Connect pulls the next one (it has written this one).
 * @internal
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { createCodec, ErrorCode, PddError, type CloudFrame, type DeviceFrame } from "../../proto/index.js";
import { fromGrpcStatus, grpcStatus } from "../error-mapping.js";
import type { SendOptions } from "../message-stream.js";
import { StreamBase } from "../stream-base.js";

type Out = DeviceFrame | CloudFrame;

/** A cheap size estimate for send-side accounting (no second encode). */
function sizeOf(m: Out): number {
  const b = m.body as { case?: string; value?: { data?: Uint8Array; tokens?: unknown[] } };
  if (b.case === "kvChunk") return (b.value?.data?.length ?? 0) + 64;
  if (b.case === "tokenBatch") return 16 + 12 * (b.value?.tokens?.length ?? 0);
  return 128;
}

export interface GrpcStreamInit {
  inSchema: DescMessage;
  outSchema: DescMessage;
  highWaterMark?: number;
  writeDeadlineMs?: number;
  maxFrameBytes?: number;
  authToken?: string;
  remoteAddress?: string;
  /** The device's end: a close is a half-close, whatever its code (a client cannot set a status, PDD-CONN-023). */
  client?: boolean;
}

export class GrpcStream<In extends Out, O extends Out> extends StreamBase<In, O> {
  private outgoing: { message: O; written: () => void }[] = [];
  private wake: (() => void) | undefined;
  private ending: { code: ErrorCode; reason: string; abrupt?: boolean } | undefined;
  private readonly outSchemaRef: DescMessage;
  /** Set by the owner: aborts the call without a status (RST_STREAM). */
  cancelCall: (reason: string) => void = () => {};

  private readonly client: boolean;

  constructor(init: GrpcStreamInit) {
    super({ transport: "grpc", codec: "proto", ...init });
    this.outSchemaRef = init.outSchema;
    this.client = init.client === true;
  }

  override send(message: O, _options?: SendOptions): Promise<void> {
    try {
      this.assertOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.ending)
      return Promise.reject(new PddError(ErrorCode.UNAVAILABLE, "gRPC call is closing", { local: "ERR_CLOSED" }));
    return this.track(sizeOf(message), () => new Promise<void>((written) => this.enqueue({ message, written })));
  }

  /** gRPC carries only well-formed messages: undecodable bytes cannot be sent over Connect. */
  override async sendRaw(frame: Uint8Array, options?: SendOptions): Promise<void> {
    let message: O;
    try {
      message = createCodec("proto").decode(this.outSchemaRef, frame) as O;
    } catch (e) {
      throw new PddError(
        ErrorCode.INVALID_ARGUMENT,
        "the gRPC binding sends only decodable frames; use a raw gRPC client for malformed ones",
        { cause: e },
      );
    }
    return this.send(message, options);
  }

  private enqueue(item: { message: O; written: () => void }): void {
    this.outgoing.push(item);
    this.wake?.();
  }

  /** The call's outgoing messages; ends (or throws the closing status) on close. */
  async *outgoingMessages(): AsyncGenerator<O> {
    for (;;) {
      const item = this.outgoing.shift();
      if (item) {
        yield item.message;
        item.written();
        continue;
      }
      if (this.ending) {
        if (this.ending.abrupt) throw new ConnectError(this.ending.reason, 1 /* Canceled, no pdd-close trailer */);
        // A client that threw here would reset the call; it half-closes, and cancels later (client.ts).
        if (this.ending.code !== ErrorCode.UNSPECIFIED && !this.client)
          throw connectErrorFor(this.ending.code, this.ending.reason);
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /**
   * Feeds received messages from the call until it ends. On the server, the
   * client's half-close ends the received frames but not the call: the
   * server may still send until it closes (PDD-CONN-026).
   */
  async pump(incoming: AsyncIterable<In>, server?: { cancelled: () => boolean }): Promise<void> {
    try {
      // Pull only while the consumer keeps up: HTTP/2 flow control then
      // pushes back on the sender.
      const it = incoming[Symbol.asyncIterator]();
      for (;;) {
        await this.readable();
        // Closed on our side (a flood's RESOURCE_EXHAUSTED): whatever still comes is dropped, so it is not decoded
        // either; flow control then stops the sender (issue 13, item 8).
        if (this.isClosed) break;
        const r = await it.next();
        if (r.done) break;
        this.receiveMessage(r.value, sizeOf(r.value));
      }
      this.queue.end();
      if (server) {
        // A reset stream can look like a half-close here; the call's signal,
        // set a moment later, tells the two apart.
        await new Promise((r) => setImmediate(r));
        if (server.cancelled()) return this.peerEnded(new ConnectError("call cancelled by the peer", 1));
        // A half-close is the device's Goodbye, not the end of the call: its
        // requests run to their End, and the owner then closes with OK
        // (PDD-CONN-026). A later cancel still ends the call (the signal).
      }
    } catch (e) {
      const err = ConnectError.from(e);
      if (server && (err.code === 8 || err.code === 3 || err.code === 13)) {
        // Our own limit or decoder refused a message: the owner reports it
        // (PDD-CONN-016) and closes; the call stays up until then.
        const code = err.code === 8 ? ErrorCode.FRAME_TOO_LARGE : ErrorCode.MALFORMED_FRAME;
        this.receiveError(
          new PddError(code, err.rawMessage, {
            local: code === ErrorCode.FRAME_TOO_LARGE ? "ERR_FRAME_TOO_LARGE" : "ERR_FRAME_DECODE",
          }),
        );
        return;
      }
      this.peerEnded(err);
    }
  }

  /** The call ended from the other side or the network. */
  peerEnded(err?: ConnectError): void {
    // A status the peer chose carries the pdd-close trailer; anything else
    // (reset, lost connection, keep-alive timeout) is an abrupt loss.
    const graceful = err === undefined || err.metadata.get(CLOSE_TRAILER) !== null;
    const code = err ? fromGrpcStatus(err.code) : ErrorCode.UNSPECIFIED;
    this.finish({ initiator: "peer", abrupt: !graceful, code, reason: err?.rawMessage ?? "" });
  }

  protected writeFrame(): Promise<void> {
    throw new Error("unreachable: GrpcStream overrides send");
  }

  protected async closeTransport(code: ErrorCode, reason: string): Promise<void> {
    this.ending = { code, reason };
    this.wake?.();
  }

  protected abortTransport(reason: string): void {
    this.ending = { code: ErrorCode.CANCELLED, reason, abrupt: true };
    this.wake?.();
    this.cancelCall(reason);
  }
}

/** Trailer that marks a status as a deliberate close rather than a loss. */
export const CLOSE_TRAILER = "pdd-close";

function connectErrorFor(code: ErrorCode, reason: string): ConnectError {
  // Connect's Code enum uses gRPC's numbers.
  return new ConnectError(reason, grpcStatus(code), new Headers({ [CLOSE_TRAILER]: String(code) }));
}
