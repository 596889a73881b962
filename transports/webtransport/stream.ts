/**
 * A MessageStream over one WebTransport session (spec §10.4): a control
 * bidirectional stream for every frame but KV chunks, and one unidirectional
 * stream per request for KV chunks, so tokens never queue behind KV bytes.
 * @internal
 */
import {
  ErrorCode,
  FIRST_FRAME_MAX_BYTES,
  FrameDecoder,
  frameHeader,
  lengthPrefixed,
  PddError,
} from "../../proto/index.js";
import { keepHttp2SessionAlive } from "../http2-keepalive.js";
import { DEFAULTS, type SendOptions } from "../message-stream.js";
import { StreamBase, type StreamBaseInit } from "../stream-base.js";
import { applyBackpressureFix } from "./backpressure-fix.js";

// Minimal structural types of the WebTransport API we use.
interface Writer {
  ready: Promise<void>;
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(reason?: unknown): Promise<void>;
}
interface Reader {
  read(): Promise<{ value?: Uint8Array; done: boolean }>;
  cancel(reason?: unknown): Promise<void>;
  releaseLock(): void;
}
export interface WtBidi {
  readable: { getReader(): Reader };
  writable: { getWriter(): Writer };
}
export interface WtSession {
  ready: Promise<void>;
  closed: Promise<{ closeCode?: number; reason?: string }>;
  close(info?: { closeCode?: number; reason?: string }): void;
  createUnidirectionalStream(): Promise<{ getWriter(): Writer }>;
  incomingUnidirectionalStreams: {
    getReader(): { read(): Promise<{ value?: { getReader(): Reader }; done: boolean }> };
  };
}

export interface WtStreamInit extends Omit<StreamBaseInit, "transport" | "pauseReading" | "resumeReading"> {
  session: WtSession;
  control: WtBidi;
  /** The HTTP/2 session under the WebTransport session, for keep-alive. */
  http2Session?: import("node:http2").Http2Session;
  pingIntervalMs?: number;
  deadPeerTimeoutMs?: number;
  /**
   * The cloud's end: the device opens no unidirectional stream (PDD-WT-006),
   * so the first one closes the session with PROTOCOL_VIOLATION instead of
   * getting a decoder of its own (issue 13, item 6).
   */
  refusePeerStreams?: boolean;
}

export class WtStream<In, Out> extends StreamBase<In, Out> {
  private readonly session: WtSession;
  private readonly control: Writer;
  private readonly maxFrameBytes: number | undefined;
  /** Open KV streams by request id, each with the way to stop listening to its abort signal. */
  private readonly kvStreams = new Map<number, { writer: Promise<Writer>; detach: () => void }>();
  private closingLocally = false;
  private controlChain: Promise<void> = Promise.resolve();

  private lost = false;
  /** The cloud's end (it refuses peer-opened streams and holds the Hello to 64 KiB). */
  private readonly isCloud: boolean;

  constructor(init: WtStreamInit) {
    super({ transport: "webtransport", ...init });
    this.isCloud = init.refusePeerStreams === true;
    applyBackpressureFix(init.control);
    if (init.http2Session) {
      // The library pings but never gives up on a silent peer; we do (PDD-TRANSPORT-002).
      const interval = init.pingIntervalMs ?? DEFAULTS.pingIntervalMs;
      const dead = init.deadPeerTimeoutMs ?? DEFAULTS.deadPeerTimeoutMs;
      keepHttp2SessionAlive(init.http2Session, interval, Math.max(1, dead - interval), () => {
        this.lost = true;
        this.finish({
          initiator: "peer",
          abrupt: true,
          code: ErrorCode.TIMEOUT,
          reason: `no PING ACK within ${dead} ms`,
        });
      });
    }
    this.session = init.session;
    this.maxFrameBytes = init.maxFrameBytes;
    this.control = init.control.writable.getWriter();
    void this.readFrames(init.control.readable.getReader(), true);
    if (init.refusePeerStreams) void this.refuseUniStreams();
    else void this.acceptKvStreams();
    init.session.closed.then(
      (info) => this.sessionEnded(info?.closeCode ?? 0, info?.reason ?? "", false),
      (err: unknown) => this.sessionEnded(0, String((err as Error)?.message ?? err), true),
    );
  }

  private sessionEnded(code: number, reason: string, abrupt: boolean): void {
    if (this.lost) return;
    this.finish({ initiator: this.closingLocally ? "local" : "peer", abrupt, code: code as ErrorCode, reason });
  }

  /** Reads length-prefixed frames from one stream until it ends. */
  private async readFrames(reader: Reader, isControl: boolean): Promise<void> {
    // The cloud reads the device's Hello under the 64 KiB first-frame limit (PDD-LIMIT-002).
    const decoder = new FrameDecoder(this.maxFrameBytes, isControl && this.isCloud ? FIRST_FRAME_MAX_BYTES : undefined);
    try {
      for (;;) {
        // When the consumer falls behind, stop reading: the streams'
        // flow-control windows then push back on the sender.
        await this.readable();
        const { value, done } = await reader.read();
        if (done) break;
        if (!value) continue;
        for (const frame of decoder.push(value)) this.receiveBytes(frame);
      }
      decoder.end();
    } catch (e) {
      // Only our own decoder's errors say something about the bytes; a read
      // that fails because the stream was reset or the session closed is the
      // end of the stream (a reset KV stream is a takeover or a cancel).
      if (e instanceof PddError && !this.isClosed) this.receiveError(e);
      else if (isControl) this.queue.end();
    }
  }

  private async acceptKvStreams(): Promise<void> {
    const incoming = this.session.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await incoming.read();
        if (done || !value) return;
        applyBackpressureFix(value);
        void this.readFrames(value.getReader(), false);
      }
    } catch {
      // the session ended
    }
  }

  private async refuseUniStreams(): Promise<void> {
    try {
      const { value, done } = await this.session.incomingUnidirectionalStreams.getReader().read();
      if (done || !value) return;
      void value
        .getReader()
        .cancel(ErrorCode.PROTOCOL_VIOLATION)
        .catch(() => undefined);
      this.refusePeer("the device opened a unidirectional stream (PDD-WT-006)");
    } catch {
      // the session ended
    }
  }

  /** A stream the peer must not open: the session ends with PROTOCOL_VIOLATION (PDD-WT-006). */
  refusePeer(reason: string): void {
    if (this.isClosed) return;
    this.closingLocally = true;
    this.closeSessionOnce(ErrorCode.PROTOCOL_VIOLATION, reason);
    this.finish({ initiator: "local", abrupt: true, code: ErrorCode.PROTOCOL_VIOLATION, reason });
  }

  protected writeFrame(frame: Uint8Array, options: SendOptions | undefined): Promise<void> {
    const bulk = options?.bulk;
    if (!bulk) {
      // Header and payload are written back to back on the one writer; the
      // chain keeps concurrent sends from interleaving their parts.
      const write = this.controlChain.then(() => writeFramed(this.control, frame));
      this.controlChain = write.catch(() => undefined);
      return write;
    }
    let kv = this.kvStreams.get(bulk.requestId);
    if (!kv) {
      // An abandoned transfer (takeover, cancel) sends nothing more, and never reopens a stream.
      if (bulk.signal?.aborted) return Promise.resolve();
      kv = this.openKvStream(bulk.requestId, bulk.signal);
    }
    const done = kv.writer.then(async (w) => {
      await writeFramed(w, frame);
      if (bulk.last) await w.close();
    });
    if (bulk.last) this.dropKvStream(bulk.requestId);
    return done;
  }

  private openKvStream(requestId: number, signal: AbortSignal | undefined) {
    const writer = this.session.createUnidirectionalStream().then((s) => s.getWriter());
    const reset = () => {
      this.dropKvStream(requestId);
      void writer.then((w) => w.abort(ErrorCode.CANCELLED)).catch(() => undefined);
    };
    signal?.addEventListener("abort", reset, { once: true });
    const kv = { writer, detach: () => signal?.removeEventListener("abort", reset) };
    this.kvStreams.set(requestId, kv);
    return kv;
  }

  private dropKvStream(requestId: number): void {
    this.kvStreams.get(requestId)?.detach();
    this.kvStreams.delete(requestId);
  }

  protected async closeTransport(code: ErrorCode, reason: string): Promise<void> {
    this.closingLocally = true;
    await this.controlChain;
    // Finish the control stream first: closing the session at once can drop
    // frames still in flight on it (a conformance case lost the last End).
    await Promise.race([this.control.close().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000))]);
    this.closeSessionOnce(code, reason);
    await Promise.race([this.session.closed.catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
  }

  protected abortTransport(reason: string): void {
    this.closingLocally = true;
    void this.control.abort(reason).catch(() => undefined);
    this.closeSessionOnce(ErrorCode.CANCELLED, reason);
  }

  private sessionCloseCalled = false;

  /**
   * @fails-components/webtransport 1.6.8 over HTTP/2: closing a session a
   * second time makes Node's HTTP/2 core queue outgoing data without end
   * until the process aborts with std::bad_alloc (measured). Close once.
   */
  private closeSessionOnce(code: ErrorCode, reason: string): void {
    if (this.sessionCloseCalled) return;
    this.sessionCloseCalled = true;
    try {
      this.session.close({ closeCode: code, reason });
    } catch {
      // already closed
    }
  }
}

/** Frames up to this size go out as one write (one capsule); larger ones are not copied. */
const COALESCE_BYTES = 64 * 1024;

async function writeFramed(w: Writer, frame: Uint8Array): Promise<void> {
  await w.ready;
  if (frame.length <= COALESCE_BYTES) return w.write(lengthPrefixed(frame));
  const header = w.write(frameHeader(frame.length));
  const body = w.write(frame);
  await Promise.all([header, body]);
}
