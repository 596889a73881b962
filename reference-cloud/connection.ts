/**
 * One connection at the reference cloud (spec §2): the hello and version
 * negotiation, authentication, request-ID rules, routing of device frames to
 * their requests, pings, goodbye, and cleanup when the connection ends — every
 * request of a lost connection is stopped and its sequence freed
 * (PDD-CONN-017).
 */
import { create } from "@bufbuild/protobuf";
import {
  CloudFrameSchema,
  Codec,
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  KvFormat,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_PINGS_PER_SECOND,
  MAX_REQUESTS_PER_SECOND,
  MIN_MAX_FRAME_BYTES,
  negotiateVersion,
  PddError,
  PROTOCOL_MAJOR,
  PROTOCOL_MINOR,
  receivedCode,
  type CloudFrame,
  type DeviceFrame,
  type Hello,
  type ModelIdentity,
} from "../proto/index.js";
import type { CloudStream } from "../transports/index.js";
import type { CloudContext } from "./context.js";
import { servedIdentity } from "./identity.js";
import { PerSecond, truncateUtf8 } from "./peer-limits.js";
import { withFields } from "./log.js";
import { CloudRequest, type RequestHost } from "./request.js";

/** Connection IDs, unique in this process, so request IDs (which restart per connection) can be told apart in logs. */
let lastConnectionId = 0;

const SUPPORTED = [{ major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR }];
type Supported = typeof SUPPORTED;
/** Frames served in a row before the loop lets other connections run (PDD-DOS-001). */
const FRAMES_PER_TURN = 64;

/** Entries a Hello's lists may hold (PDD-LIMIT-007). */
const MAX_HELLO_LIST = 8;

/** Why a Hello is connection error INVALID_ARGUMENT before anything else is checked, if it is (PDD-LIMIT-007, PDD-VER-009). */
function malformedHello(hello: Hello): string | undefined {
  const lists = { versions: hello.versions, codecs: hello.codecs, kv_formats: hello.capabilities?.kvFormats ?? [] };
  for (const [name, list] of Object.entries(lists))
    if (list.length > MAX_HELLO_LIST)
      return `Hello has ${list.length} entries in ${name}; at most ${MAX_HELLO_LIST} (PDD-LIMIT-007)`;
  const majors = hello.versions.map((v) => v.major);
  if (new Set(majors).size !== majors.length) return "Hello lists one major version twice (PDD-VER-009)";
  return undefined;
}

export class CloudConnection {
  /** The credential this connection authenticated with (when the cloud requires one). */
  private credential: string | undefined;
  private hello: Hello | undefined;
  /** The minor version negotiated with the Hello: 1.1 rules apply from 1 on (PDD-VER-007). */
  private minor = 0;
  private requests = new Map<number, CloudRequest>();
  private maxRequestId = 0;
  private goodbye = false;
  private closed = false;
  /** A connection error under way (its Error is being sent): the loop serves no more frames. */
  private failing: Promise<void> | undefined;
  /** The stream ended (the peer left, or we closed it): frames still queued in it are dropped, not served. */
  private streamEnded = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Pings and PrefillRequests received in the current one-second window, each at most 1,000 (PDD-DOS-001). */
  private readonly pings = new PerSecond(MAX_PINGS_PER_SECOND);
  private readonly asks = new PerSecond(MAX_REQUESTS_PER_SECOND);

  /** This connection's ID in logs (`conn`). */
  readonly id = ++lastConnectionId;
  private readonly ctx: CloudContext;

  constructor(
    private readonly stream: CloudStream,
    shared: CloudContext,
  ) {
    // Every line this connection and its requests log names the connection.
    this.ctx = { ...shared, log: withFields(shared.log, { conn: this.id }) };
  }

  private async send(
    frame: CloudFrame,
    bulk?: { requestId: number; last: boolean; signal: AbortSignal },
  ): Promise<void> {
    await this.stream.send(frame, bulk ? { bulk } : undefined);
  }

  /** A connection error (spec §2.6): Error with request_id 0, then close. */
  private fail(code: ErrorCode, message: string, extra: Partial<{ supportedVersions: Supported }> = {}): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.failing ??= this.sendErrorAndClose(code, message, extra);
    return this.failing;
  }

  private async sendErrorAndClose(
    code: ErrorCode,
    message: string,
    extra: Partial<{ supportedVersions: Supported }>,
  ): Promise<void> {
    message = truncateUtf8(message, MAX_ERROR_MESSAGE_BYTES); // PDD-SEC-007: never a peer's input echoed whole
    this.ctx.metrics.errors.inc({ code: ErrorCode[code] ?? String(code) });
    this.ctx.log.info("connection error", { code: ErrorCode[code], message, peer: this.stream.remoteAddress });
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "error",
          value: { requestId: 0, code, message, retryable: code === ErrorCode.UNAVAILABLE, ...extra },
        },
      }),
    ).catch(() => undefined);
    await this.close(code, message);
  }

  private async close(code: ErrorCode = ErrorCode.UNSPECIFIED, reason = ""): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    await this.stream.close(code, reason);
  }

  /** Serves the connection until it ends. Never throws. */
  async serve(): Promise<void> {
    const { ctx } = this;
    ctx.metrics.connections.inc();
    ctx.connections.add(this);
    ctx.log.debug("connection opened", { peer: this.stream.remoteAddress });
    this.stream.onClose(() => (this.streamEnded = true));
    this.stream.onArrival((frame) => this.countArrival(frame));
    const handshake = setTimeout(
      () =>
        void this.fail(ErrorCode.TIMEOUT, `no Hello within ${ctx.config.limits.handshakeTimeoutMs} ms (PDD-CONN-006)`),
      ctx.config.limits.handshakeTimeoutMs,
    );
    let served = 0;
    try {
      for await (const frame of this.stream) {
        // Frames already queued arrive without a turn of the event loop: yield now and then, so one busy
        // connection cannot starve every other one (issue 13, item 8).
        if (++served % FRAMES_PER_TURN === 0) await new Promise((r) => setImmediate(r));
        // Nothing can be answered on a closed stream: serving its queued frames would only admit requests for nobody.
        if (this.closed || this.streamEnded || this.failing) break;
        this.touch();
        if (!this.hello) {
          clearTimeout(handshake);
          await this.onHello(frame);
          continue;
        }
        await this.onFrame(frame);
      }
      if (!this.closed && !this.streamEnded) await this.inputEnded();
    } catch (e) {
      const err = PddError.from(e, ErrorCode.MALFORMED_FRAME);
      // Undecodable or oversize input (PDD-CODEC-001, PDD-LIMIT-001): connection error.
      await this.fail(
        err.code === ErrorCode.FRAME_TOO_LARGE ? ErrorCode.FRAME_TOO_LARGE : ErrorCode.MALFORMED_FRAME,
        err.rawMessage,
      );
    } finally {
      clearTimeout(handshake);
      clearTimeout(this.idleTimer);
      await this.failing; // its Error goes out before the requests are stopped, and its close code is the one sent
      this.closed = true;
      // Stop and free everything this connection started (PDD-CONN-017).
      for (const r of this.requests.values()) r.halt({ kind: "cancel" });
      await Promise.all([...this.requests.values()].map((r) => r.done));
      ctx.connections.delete(this);
      ctx.metrics.connections.dec();
      ctx.log.debug("connection closed", { requests: this.maxRequestId });
      await this.stream.close().catch(() => undefined);
    }
  }

  /**
   * Counts Pings and PrefillRequests as they arrive, not as the loop gets to
   * them: a cloud serving fewer than 1,000 frames a second would otherwise
   * never see a flood, and would answer all of it (PDD-DOS-001). Each
   * PrefillRequest costs its refusal at least: a flood of them would be
   * 100,000 answers for a peer that may never read them (issue 13, item 1).
   * Over either limit, the frames still queued are never served.
   */
  private countArrival(frame: DeviceFrame): void {
    const kind = frame.body.case;
    if (kind === "ping" && !this.pings.allow())
      void this.fail(
        ErrorCode.RESOURCE_EXHAUSTED,
        `more than ${MAX_PINGS_PER_SECOND} Pings in one second (PDD-DOS-001)`,
      );
    else if (kind === "prefillRequest" && !this.asks.allow())
      void this.fail(
        ErrorCode.RESOURCE_EXHAUSTED,
        `more than ${MAX_REQUESTS_PER_SECOND} PrefillRequests in one second (PDD-DOS-001)`,
      );
  }

  /**
   * The device will send nothing more but the connection is open (a gRPC
   * half-close): that is its Goodbye. Its requests run to their End, then
   * the call ends with OK (PDD-CONN-026, PDD-CONN-025); a cancel meanwhile
   * is a loss (serve()'s cleanup halts them).
   */
  private async inputEnded(): Promise<void> {
    this.goodbye = true;
    if (this.live() === 0) await this.close();
    await this.stream.closed;
  }

  /**
   * The keys were reloaded: a connection whose credential is no longer
   * accepted is closed with UNAUTHENTICATED (PDD-SEC-009), its requests
   * stopped (issue 13, item 9).
   */
  recheckCredential(): void {
    if (!this.hello || !this.ctx.authorize || this.ctx.authorize(this.credential)) return;
    void this.fail(ErrorCode.UNAUTHENTICATED, "the credential was revoked (PDD-SEC-009)");
  }

  private touch(): void {
    clearTimeout(this.idleTimer);
    const idle = this.ctx.config.limits.idleTimeoutMs;
    this.idleTimer = setTimeout(() => {
      if (this.live() === 0) {
        void this.send(
          create(CloudFrameSchema, {
            body: { case: "goodbye", value: { code: ErrorCode.TIMEOUT, reason: `idle for ${idle} ms` } },
          }),
        )
          .catch(() => undefined)
          // A graceful close, not a connection error (PDD-CONN-020).
          .then(() => this.close());
      } else this.touch();
    }, idle);
    this.idleTimer.unref();
  }

  private live(): number {
    let n = 0;
    for (const r of this.requests.values()) if (r.live) n++;
    return n;
  }

  private async onHello(frame: DeviceFrame): Promise<void> {
    const b = frame.body;
    if (b.case !== "hello")
      return this.fail(
        ErrorCode.PROTOCOL_VIOLATION,
        `first frame was ${b.case ?? "one with no known body"}, not Hello (PDD-CONN-002)`,
      );
    const hello = b.value;
    // The credential first: a peer without one learns nothing else, and costs no more work (issue 13, item 5).
    const token = this.stream.authToken ?? (hello.authToken || undefined);
    if (this.ctx.authorize && !this.ctx.authorize(token))
      return this.fail(ErrorCode.UNAUTHENTICATED, "missing or invalid credential (PDD-CONN-011)");
    const malformed = malformedHello(hello);
    if (malformed) return this.fail(ErrorCode.INVALID_ARGUMENT, malformed);
    const supported = [{ major: PROTOCOL_MAJOR, minor: this.ctx.protocolMinor }];
    const version = negotiateVersion(hello.versions, supported);
    if (!version)
      return this.fail(
        ErrorCode.UNSUPPORTED_VERSION,
        // The offered versions, not echoed whole: at most 8 of them (PDD-SEC-007).
        `no common major version; offered ${hello.versions.map((v) => `${v.major}.${v.minor}`).join(", ") || "none"} (PDD-VER-003)`,
        { supportedVersions: supported },
      );
    const codec = this.stream.codec === "msgpack" ? Codec.MSGPACK : Codec.PROTO;
    if (!hello.codecs.includes(codec))
      return this.fail(ErrorCode.UNSUPPORTED_CODEC, `Hello.codecs lacks this connection's codec (PDD-CONN-007)`);
    this.credential = this.ctx.authorize ? token : undefined;
    if (hello.maxFrameBytes > 0 && hello.maxFrameBytes < MIN_MAX_FRAME_BYTES)
      return this.fail(
        ErrorCode.INVALID_ARGUMENT,
        `Hello.max_frame_bytes ${hello.maxFrameBytes} is below the minimum of ${MIN_MAX_FRAME_BYTES} (PDD-MSG-012)`,
      );
    this.hello = hello;
    this.minor = version.minor;
    const e = this.ctx.engine;
    const l = this.ctx.config.limits;
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "helloAck",
          value: {
            version,
            codec,
            limits: {
              maxFrameBytes: l.maxFrameBytes,
              maxPromptTokens: Math.min(l.maxPromptTokens ?? e.contextSize - 1, e.contextSize - 1),
              maxConcurrentRequests: l.maxConcurrentRequests,
              maxCloudTokenBudget: l.maxCloudTokenBudget,
              maxKvChunkBytes: l.maxKvChunkBytes,
              idleTimeoutMs: l.idleTimeoutMs,
              maxRequestDurationMs: l.maxRequestDurationMs,
            },
            cloudModel: servedIdentity(e),
            capabilities: {
              kvChunks: this.ctx.engine.exportsKv !== false,
              kvFormats: this.ctx.engine.exportsKv !== false ? [KvFormat.LLAMA_SEQ_STATE] : [],
              refinement: this.ctx.engine.scoresPrompts !== false,
              tokenIds: true,
            },
            serverName: this.ctx.serverName,
          },
        },
      }),
    );
  }

  private async onFrame(frame: DeviceFrame): Promise<void> {
    const b = frame.body;
    switch (b.case) {
      case "hello":
        return this.fail(ErrorCode.PROTOCOL_VIOLATION, "second Hello (PDD-CONN-004)");
      case "prefillRequest":
        return this.onRequest(b.value);
      case "takeover":
      case "cancel":
      case "kvCredit":
      case "kvAbort":
      case "progress": {
        const id = b.value.requestId;
        if (id > this.maxRequestId || id === 0)
          return this.fail(
            ErrorCode.PROTOCOL_VIOLATION,
            `${b.case} for request ${id}, which was never opened (PDD-SM-004)`,
          );
        const r = this.requests.get(id);
        if (!r) return; // ended: crossed our End in flight (PDD-SM-003)
        try {
          r.onFrame(frame);
        } catch (e) {
          r.halt({ kind: "error", error: PddError.from(e) }); // PDD-TAKEOVER-006
        }
        return;
      }
      case "ping":
        return this.send(
          create(CloudFrameSchema, {
            body: {
              case: "pong",
              value: {
                nonce: b.value.nonce,
                pingSentAtUs: b.value.sentAtUs,
                receivedAtUs: BigInt(Math.round(performance.timeOrigin * 1000 + performance.now() * 1000)),
              },
            },
          }),
        );
      case "error":
        // The device ended the connection (PDD-CONN-024): close before the
        // requests stop, so that none of their frames follow; serve() then
        // stops and frees them.
        // A code §13.2 does not give the device here counts as INTERNAL (PDD-ERR-003).
        return this.close(receivedCode(b.value.code, "conn", "device"), "the device reported a connection error");
      case "goodbye":
        this.goodbye = true;
        if (this.live() === 0) await this.close();
        return;
      default:
        return; // unknown body: ignored (PDD-VER-006)
    }
  }

  /**
   * A request (a refusal too) stays in `requests` until its End has left.
   * Past twice the live-request limit, the loop waits for one to leave before
   * it reads on: a peer that does not read its answers then stops being read
   * (flow control pushes back on it, and the write deadline ends it) instead
   * of making the cloud hold an answer for each of its requests (issue 13,
   * item 1: 150,000 refusals buffered for a gone WebSocket peer, 861 MiB).
   */
  private async untilAnswersLeave(): Promise<void> {
    const most = 2 * this.ctx.config.limits.maxConcurrentRequests;
    // The stream's close ends the wait too: the requests are halted only once the loop gets to its end.
    while (this.requests.size >= most && !this.streamEnded)
      await Promise.race([...[...this.requests.values()].map((r) => r.done), this.stream.closed]);
  }

  /** PDD-SM-005: connection-scope, non-fatal; the live owner of the ID is untouched. */
  private async refuseDuplicateId(id: number): Promise<void> {
    this.ctx.metrics.errors.inc({ code: "DUPLICATE_REQUEST_ID" });
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "error",
          value: {
            requestId: 0,
            code: ErrorCode.DUPLICATE_REQUEST_ID,
            message: `request id ${id} is not above ${this.maxRequestId} (PDD-SM-005)`,
          },
        },
      }),
    );
  }

  /** This request alone is refused; it holds its ID until its End has gone out. */
  private refuseRequest(id: number, request: CloudRequest, error: PddError, after?: () => void): void {
    this.requests.set(id, request);
    void request.refuse(error).then(() => {
      this.requests.delete(id);
      after?.();
    });
  }

  /**
   * PDD-LIMIT-004/005: a request over the connection's or its credential's
   * live-request limit is refused alone (retryable). Otherwise it takes one of
   * its credential's slots; returns whether it did.
   */
  private claimCapacity(key: string | undefined, id: number): boolean {
    const max = this.ctx.config.limits.maxConcurrentRequests;
    let others = 0;
    for (const [rid, r] of this.requests) if (rid !== id && r.live) others++;
    if (others >= max)
      throw new PddError(ErrorCode.RESOURCE_EXHAUSTED, `more than ${max} live requests on this connection`, {
        retryable: true,
      });
    const keyLimit = this.ctx.keyLimit(key);
    if (key === undefined) return false;
    if (keyLimit !== undefined && (this.ctx.liveByKey.get(key) ?? 0) >= keyLimit)
      throw new PddError(ErrorCode.RESOURCE_EXHAUSTED, `more than ${keyLimit} live requests for this credential`, {
        retryable: true,
      });
    this.ctx.liveByKey.set(key, (this.ctx.liveByKey.get(key) ?? 0) + 1);
    return true;
  }

  private async onRequest(
    req: DeviceFrame["body"] & { case: "prefillRequest" } extends { value: infer V } ? V : never,
  ): Promise<void> {
    const id = req.requestId;
    if (this.ctx.authorize && !this.ctx.authorize(this.credential))
      return this.fail(ErrorCode.UNAUTHENTICATED, "the credential was revoked (PDD-SEC-009)");
    await this.untilAnswersLeave();
    if (this.streamEnded) return;
    if (id === 0 || id <= this.maxRequestId) return this.refuseDuplicateId(id);
    this.maxRequestId = id;
    const key = this.credential;
    let counted = false; // whether this request holds one of its key's live slots
    // Aborting it abandons the request's KV transfer: WebTransport resets the request's KV stream.
    const kv = new AbortController();
    const host: RequestHost = {
      send: (f: CloudFrame, bulk?: { last: boolean }) =>
        this.send(f, bulk ? { requestId: id, last: bulk.last, signal: kv.signal } : undefined),
      abortBulk: () => kv.abort(),
      // Before End: a device that saw End may start its next request at once (PDD-TAKEOVER-005).
      released: () => {
        if (!counted || key === undefined) return;
        counted = false;
        const n = (this.ctx.liveByKey.get(key) ?? 1) - 1;
        if (n > 0) this.ctx.liveByKey.set(key, n);
        else this.ctx.liveByKey.delete(key);
      },
      // Capacity is checked after the request itself is found valid (PDD-REQ-007 step 8).
      claim: () => {
        counted = this.claimCapacity(key, id);
      },
      deviceModel: this.hello?.deviceModel as ModelIdentity | undefined,
      minor: this.minor,
      maxFrameBytes: this.hello?.maxFrameBytes || DEFAULT_MAX_FRAME_BYTES,
    };
    const request = new CloudRequest(this.ctx, host, req);
    if (this.goodbye) {
      // The device said goodbye: a request after it is never run (PDD-CONN-027).
      return this.refuseRequest(
        id,
        request,
        new PddError(ErrorCode.PROTOCOL_VIOLATION, "PrefillRequest after the device's Goodbye (PDD-CONN-027)"),
        () => this.live() === 0 && void this.close(),
      );
    }
    this.requests.set(id, request);
    void request.run().then(() => {
      this.requests.delete(id);
      if (this.goodbye && this.live() === 0) void this.close();
    });
  }
}
