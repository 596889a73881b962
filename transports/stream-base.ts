/**
 * What every binding's MessageStream shares: encoding with the connection's
 * codec, send-side accounting against the high-water mark, the receive queue,
 * and close bookkeeping. A binding supplies only how bytes move.
 * @internal
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { createCodec, ErrorCode, PddError, type CodecName, type FrameCodec } from "../proto/index.js";
import { FrameQueue } from "./frame-queue.js";
import {
  DEFAULTS,
  type CloseInfo,
  type MessageStream,
  type SendOptions,
  type TransportName,
} from "./message-stream.js";

export interface StreamBaseInit {
  transport: TransportName;
  codec: CodecName;
  inSchema: DescMessage;
  outSchema: DescMessage;
  maxFrameBytes?: number;
  highWaterMark?: number;
  /** Default DEFAULTS.writeDeadlineMs. */
  writeDeadlineMs?: number;
  authToken?: string;
  remoteAddress?: string;
  /** Called when the receive queue is full / drained again. */
  pauseReading?: () => void;
  resumeReading?: () => void;
}

const RESOLVED: Promise<void> = Promise.resolve();

export abstract class StreamBase<In, Out> implements MessageStream<In, Out> {
  readonly transport: TransportName;
  readonly codec: CodecName;
  readonly authToken: string | undefined;
  readonly remoteAddress: string | undefined;
  readonly closed: Promise<CloseInfo>;
  protected readonly frameCodec: FrameCodec;
  protected readonly queue: FrameQueue<In>;
  protected readonly highWaterMark: number;
  private readonly inSchema: DescMessage;
  private readonly outSchema: DescMessage;
  private pending = 0;
  /** close() for an error has begun: frames still arriving are dropped undecoded. */
  private failing = false;
  private readPaused = false;
  private readWaiters: (() => void)[] = [];
  /** Senders blocked on the high-water mark; they reject (ERR_CLOSED) if the stream closes first. */
  private drainWaiters: { resolve: () => void; reject: (e: PddError) => void }[] = [];
  /**
   * Runs while a sender is blocked: a peer that takes no byte for this long
   * is not reading (window 0, a stopped process) and would hold whatever the
   * blocked sender holds for as long as it likes (issue 13, item 3).
   */
  private writeDeadline: NodeJS.Timeout | undefined;
  private readonly writeDeadlineMs: number;
  private resolveClosed!: (info: CloseInfo) => void;
  private closeInfo: CloseInfo | undefined;
  private listeners: ((info: CloseInfo) => void)[] = [];
  private arrivalListeners: ((frame: In) => void)[] = [];

  constructor(init: StreamBaseInit) {
    this.transport = init.transport;
    this.codec = init.codec;
    this.authToken = init.authToken;
    this.remoteAddress = init.remoteAddress;
    this.inSchema = init.inSchema;
    this.outSchema = init.outSchema;
    this.highWaterMark = init.highWaterMark ?? DEFAULTS.highWaterMark;
    this.writeDeadlineMs = init.writeDeadlineMs ?? DEFAULTS.writeDeadlineMs;
    this.frameCodec = createCodec(init.codec, { maxFrameBytes: init.maxFrameBytes });
    this.queue = new FrameQueue<In>(
      this.highWaterMark,
      () => {
        this.readPaused = true;
        init.pauseReading?.();
      },
      () => {
        this.readPaused = false;
        const w = this.readWaiters;
        this.readWaiters = [];
        for (const r of w) r();
        init.resumeReading?.();
      },
    );
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  get bufferedAmount(): number {
    return this.pending;
  }

  get isClosed(): boolean {
    return this.closeInfo !== undefined;
  }

  /** Writes one encoded frame; resolves when the bytes have left this process's buffers. */
  protected abstract writeFrame(frame: Uint8Array, options: SendOptions | undefined): Promise<void>;
  protected abstract closeTransport(code: ErrorCode, reason: string): Promise<void>;
  protected abstract abortTransport(reason: string): void;

  send(message: Out, options?: SendOptions): Promise<void> {
    try {
      return this.sendRaw(this.frameCodec.encode(this.outSchema, message as MessageShape<DescMessage>), options);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Sends pre-encoded bytes as one frame: send()'s path after encoding, and test tools' way to send malformed frames. */
  sendRaw(frame: Uint8Array, options?: SendOptions): Promise<void> {
    if (this.closeInfo) return Promise.reject(this.closedError());
    return this.track(frame.length, () => this.writeFrame(frame, options));
  }

  protected assertOpen(): void {
    if (this.closeInfo) throw this.closedError();
  }

  protected closedError(): PddError {
    return new PddError(ErrorCode.UNAVAILABLE, `${this.transport} connection is closed`, { local: "ERR_CLOSED" });
  }

  /**
   * Counts `size` bytes as buffered until `write` settles, and resolves once
   * the buffered total is below the high-water mark. The common case, room
   * under the mark, allocates no promise of its own (this is the per-token
   * hot path).
   */
  protected track(size: number, write: () => Promise<void>): Promise<void> {
    this.pending += size;
    write().then(
      () => this.released(size),
      () => this.released(size),
    );
    if (this.pending < this.highWaterMark) return RESOLVED;
    this.armWriteDeadline();
    return new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
  }

  /**
   * For bindings that know when a frame has left (ws): a sender over the mark
   * waits for `written`, and rejects (ERR_CLOSED) when the stream closes
   * first; the write deadline runs meanwhile.
   */
  protected waitWritten(written: Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject };
      this.drainWaiters.push(waiter);
      this.armWriteDeadline();
      const settle = (ok: boolean) => {
        const i = this.drainWaiters.indexOf(waiter);
        if (i < 0) return; // the close already rejected it
        this.drainWaiters.splice(i, 1);
        if (this.drainWaiters.length === 0) this.clearWriteDeadline();
        else this.writeDeadline?.refresh();
        if (ok) resolve();
        else reject(this.closedError());
      };
      written.then(
        () => settle(true),
        () => settle(false),
      );
    });
  }

  private armWriteDeadline(): void {
    this.writeDeadline ??= setTimeout(() => this.writeStalled(), this.writeDeadlineMs).unref();
  }

  private released(size: number): void {
    this.pending -= size;
    if (this.pending < this.highWaterMark && this.drainWaiters.length > 0) {
      this.clearWriteDeadline();
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w.resolve();
    } else this.writeDeadline?.refresh(); // progress: the deadline starts again
  }

  private clearWriteDeadline(): void {
    clearTimeout(this.writeDeadline);
    this.writeDeadline = undefined;
  }

  /** No byte left for writeDeadlineMs while a sender waited: the connection ends, abruptly (nothing more can be sent). */
  private writeStalled(): void {
    this.writeDeadline = undefined;
    if (this.closeInfo || this.drainWaiters.length === 0) return;
    const reason = `the peer took no data for ${this.writeDeadlineMs} ms`;
    this.abortTransport(reason);
    this.finish({ initiator: "local", abrupt: true, code: ErrorCode.TIMEOUT, reason });
  }

  /** Resolves when the consumer wants more frames (bindings that pull call it before each read). */
  protected readable(): Promise<void> {
    if (!this.readPaused || this.closeInfo) return Promise.resolve();
    return new Promise((resolve) => this.readWaiters.push(resolve));
  }

  /** Bindings call this with each received frame's bytes. */
  protected receiveBytes(bytes: Uint8Array): void {
    if (this.failing) return; // nobody will read it: a flood after our error close costs no decoding (issue 13, item 8)
    let message: In;
    try {
      message = this.frameCodec.decode(this.inSchema, bytes) as In;
    } catch (e) {
      this.queue.fail(PddError.from(e, ErrorCode.MALFORMED_FRAME));
      return;
    }
    this.receiveMessage(message, bytes.length);
  }

  /** Bindings that decode themselves (gRPC) call this with the message's wire size. */
  protected receiveMessage(message: In, size: number): void {
    for (const l of this.arrivalListeners) l(message);
    // Frames with no known body are delivered too: the peer ignores them after
    // the Hello (PDD-VER-006), but as a first frame one is PROTOCOL_VIOLATION (PDD-CONN-002).
    this.queue.push(message, size);
  }

  onArrival(listener: (frame: In) => void): void {
    this.arrivalListeners.push(listener);
  }

  /** Bindings call this when receiving fails (oversize frame, decode error). */
  protected receiveError(error: unknown): void {
    this.queue.fail(PddError.from(error, ErrorCode.MALFORMED_FRAME));
  }

  [Symbol.asyncIterator](): AsyncIterator<In> {
    return this.queue[Symbol.asyncIterator]();
  }

  async close(code: ErrorCode = ErrorCode.UNSPECIFIED, reason = ""): Promise<void> {
    if (this.closeInfo) return;
    if (code !== ErrorCode.UNSPECIFIED) this.failing = true;
    await this.closeTransport(code, reason).catch(() => undefined);
    this.finish({ initiator: "local", abrupt: false, code, reason });
  }

  abort(reason = "aborted"): void {
    if (this.closeInfo) return;
    this.abortTransport(reason);
    this.finish({ initiator: "local", abrupt: true, code: ErrorCode.UNSPECIFIED, reason });
  }

  /** Records the end of the connection once; later calls are ignored. */
  protected finish(info: CloseInfo): void {
    if (this.closeInfo) return;
    this.closeInfo = info;
    this.clearWriteDeadline();
    this.queue.end();
    for (const r of this.readWaiters.splice(0)) r();
    // A blocked sender's frame never left: it learns so instead of going on as if it had been sent.
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.reject(this.closedError());
    this.resolveClosed(info);
    for (const l of this.listeners) l(info);
  }

  onClose(listener: (info: CloseInfo) => void): void {
    if (this.closeInfo) listener(this.closeInfo);
    else this.listeners.push(listener);
  }
}
