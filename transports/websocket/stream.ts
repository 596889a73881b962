/** A MessageStream over one `ws` WebSocket (spec §10.2). @internal */
import type { DescMessage } from "@bufbuild/protobuf";
import type WebSocket from "ws";
import { DEFAULT_MAX_FRAME_BYTES, ErrorCode, PddError, type CodecName } from "../../proto/index.js";
import { closeReason, fromWsCloseCode, wsCloseCode } from "../error-mapping.js";
import { DEFAULTS, type SendOptions } from "../message-stream.js";
import { StreamBase } from "../stream-base.js";
import { messageLimitOf, raiseMessageLimit } from "./message-limit.js";

export interface WsStreamInit {
  ws: WebSocket;
  codec: CodecName;
  inSchema: DescMessage;
  outSchema: DescMessage;
  maxFrameBytes?: number;
  /** The limit `ws` was opened with for the first message (the cloud's 64 KiB Hello); raised to maxFrameBytes after it. */
  firstFrameMaxBytes?: number;
  highWaterMark?: number;
  writeDeadlineMs?: number;
  pingIntervalMs?: number;
  deadPeerTimeoutMs?: number;
  authToken?: string;
  remoteAddress?: string;
}

const SEND_OPTIONS = { binary: true, compress: false } as const;
const RESOLVED: Promise<void> = Promise.resolve();

export class WsStream<In, Out> extends StreamBase<In, Out> {
  private readonly ws: WebSocket;
  private closing = false;
  private keepAlive: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();

  constructor(init: WsStreamInit) {
    super({
      transport: "websocket",
      codec: init.codec,
      inSchema: init.inSchema,
      outSchema: init.outSchema,
      maxFrameBytes: init.maxFrameBytes,
      highWaterMark: init.highWaterMark,
      writeDeadlineMs: init.writeDeadlineMs,
      authToken: init.authToken,
      remoteAddress: init.remoteAddress,
      pauseReading: () => init.ws.pause(),
      resumeReading: () => init.ws.resume(),
    });
    this.ws = init.ws;
    const ws = init.ws;
    ws.binaryType = "nodebuffer";
    let first = init.firstFrameMaxBytes !== undefined;
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      this.lastHeard = Date.now();
      if (first) {
        first = false;
        try {
          raiseMessageLimit(ws, init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
        } catch (e) {
          this.receiveError(e); // ws changed under us (the server checks at start): the connection fails, the process does not
          return;
        }
      }
      if (!isBinary) {
        this.receiveError(
          new PddError(ErrorCode.MALFORMED_FRAME, "PDD-WS-002: text WebSocket message", { local: "ERR_FRAME_DECODE" }),
        );
        return;
      }
      this.receiveBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    ws.on("pong", () => (this.lastHeard = Date.now()));
    ws.on("ping", () => (this.lastHeard = Date.now()));
    ws.on("error", (err: Error & { code?: string }) => {
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
        // ws has already started closing with 1009 (PDD-WS-003).
        this.receiveError(
          new PddError(ErrorCode.FRAME_TOO_LARGE, `message over the ${messageLimitOf(ws) ?? "default"}-byte limit`, {
            local: "ERR_FRAME_TOO_LARGE",
          }),
        );
      }
    });
    ws.on("close", (code: number, reason: Buffer) => {
      this.stopKeepAlive();
      this.finish({
        initiator: this.closing ? "local" : "peer",
        abrupt: code === 1006,
        code: fromWsCloseCode(code),
        reason: reason.toString("utf8"),
      });
    });
    const interval = init.pingIntervalMs ?? DEFAULTS.pingIntervalMs;
    const deadAfter = init.deadPeerTimeoutMs ?? DEFAULTS.deadPeerTimeoutMs;
    // The silence is checked ten times per dead-peer timeout, so a peer is lost at most a tenth of it late
    // (it was checked once per ping interval: 45 s instead of 30, issue 13, item 7); pings keep their interval.
    let lastPing = Date.now();
    const pingEvery = Math.min(interval, Math.max(50, Math.floor(deadAfter / 2)));
    this.keepAlive = setInterval(
      () => {
        if (Date.now() - this.lastHeard > deadAfter) {
          this.stopKeepAlive();
          ws.terminate();
          this.finish({
            initiator: "peer",
            abrupt: true,
            code: ErrorCode.TIMEOUT,
            reason: `no sign of the peer for ${deadAfter} ms`,
          });
          return;
        }
        if (ws.readyState === ws.OPEN && Date.now() - lastPing >= pingEvery) {
          lastPing = Date.now();
          ws.ping();
        }
      },
      Math.max(10, Math.min(interval, Math.floor(deadAfter / 10))),
    );
    this.keepAlive.unref();
  }

  private stopKeepAlive(): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = undefined;
  }

  /** ws knows exactly what it has queued (its own queue and the socket's). */
  override get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /**
   * The per-token hot path: with room under the high-water mark the frame is
   * handed to ws with no callback and no promise; over it, the returned
   * promise waits until this frame (and so every earlier one) is written.
   */
  override sendRaw(frame: Uint8Array, _options?: SendOptions): Promise<void> {
    if (this.isClosed || this.ws.readyState !== this.ws.OPEN) return Promise.reject(this.closedError());
    if (this.ws.bufferedAmount + frame.length < this.highWaterMark) {
      this.ws.send(frame, SEND_OPTIONS);
      return RESOLVED;
    }
    return this.waitWritten(
      new Promise((resolve, reject) => this.ws.send(frame, SEND_OPTIONS, (err) => (err ? reject(err) : resolve()))),
    );
  }

  protected writeFrame(frame: Uint8Array, _options: SendOptions | undefined): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState !== this.ws.OPEN) return resolve();
      this.ws.send(frame, { binary: true, compress: false }, () => resolve());
    });
  }

  protected closeTransport(code: ErrorCode, reason: string): Promise<void> {
    this.closing = true;
    this.stopKeepAlive();
    return new Promise((resolve) => {
      if (this.ws.readyState === this.ws.CLOSED) return resolve();
      const timer = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2_000);
      this.ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close(wsCloseCode(code), closeReason(reason));
      // A peer closed for flooding (RESOURCE_EXHAUSTED) is read no more: its frames would keep ws parsing
      // until the timer above ends the socket, starving every other connection (issue 13, item 8). Other
      // closes keep reading, so the peer's close reply ends the socket at once (the fuzz tests close
      // thousands of connections for malformed input).
      if (code === ErrorCode.RESOURCE_EXHAUSTED) this.ws.pause();
    });
  }

  protected abortTransport(): void {
    this.closing = true;
    this.stopKeepAlive();
    this.ws.terminate();
  }
}
