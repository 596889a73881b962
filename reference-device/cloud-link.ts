/**
 * The device's connection to a cloud: one multiplexed PDD connection. It
 * sends Hello and pipelines requests behind it (PDD-CONN-005), routes cloud
 * frames to the request they belong to, and tells every live request when the
 * connection is lost so the device can finish locally (PDD-CONN-018).
 */
import { create } from "@bufbuild/protobuf";
import {
  Codec,
  DeviceFrameSchema,
  ErrorCode,
  MIN_KV_CHUNK_BYTES,
  MIN_MAX_FRAME_BYTES,
  PddError,
  PROTOCOL_MAJOR,
  PROTOCOL_MINOR,
  receivedCode,
  type CloudFrame,
  type DeviceFrame,
  type HelloAck,
  type ModelIdentity,
} from "../proto/index.js";
import { connect, type ClientOptions, type DeviceStream } from "../transports/index.js";
import { EarlyKvChunks } from "./early-kv.js";

/** A device gives a HelloAck at least this long (PDD-CONN-022). */
export const MIN_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface RequestSink {
  onFrame(frame: CloudFrame): void;
  /** The connection ended or failed; no more frames will come. */
  onLost(error: PddError): void;
}

export class CloudLink {
  private sinks = new Map<number, RequestSink>();
  private nextId = 1;
  private ackWaiters: { resolve: (a: HelloAck) => void; reject: (e: PddError) => void }[] = [];
  private pongWaiters = new Map<bigint, (receivedAtMs: number) => void>();
  ack: HelloAck | undefined;
  lostWith: PddError | undefined;

  /** WebTransport only: chunks that overtook their Accepted (PDD-WT-007); elsewhere that order is a violation. */
  private readonly early: EarlyKvChunks | undefined;

  private constructor(private readonly stream: DeviceStream) {
    this.early = stream.transport === "webtransport" ? new EarlyKvChunks() : undefined;
  }

  /** Connects and sends Hello; resolves without waiting for HelloAck. */
  static async open(
    url: string,
    deviceModel: ModelIdentity,
    options: ClientOptions & { kv?: boolean; handshakeTimeoutMs?: number } = {},
  ): Promise<CloudLink> {
    return CloudLink.over(await connect(url, options), deviceModel, { ...options, helloAuth: isSafeForHello(url) });
  }

  /** Sends Hello on a connected stream; `helloAuth`: whether the token may go in the Hello (PDD-SEC-002). */
  static async over(
    stream: DeviceStream,
    deviceModel: ModelIdentity,
    options: ClientOptions & {
      kv?: boolean;
      handshakeTimeoutMs?: number;
      helloAuth?: boolean;
    } = {},
  ): Promise<CloudLink> {
    const link = new CloudLink(stream);
    const codec = stream.codec === "msgpack" ? Codec.MSGPACK : Codec.PROTO;
    await stream.send(
      create(DeviceFrameSchema, {
        body: {
          case: "hello",
          value: {
            versions: [{ major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR }],
            // Every codec this device implements, the connection's first (PDD-MSG-005).
            codecs: codec === Codec.PROTO ? [Codec.PROTO, Codec.MSGPACK] : [Codec.MSGPACK, Codec.PROTO],
            capabilities: { kvChunks: options.kv !== false, kvFormats: [1], refinement: true },
            deviceModel,
            // Only over TLS or loopback (PDD-SEC-002); the transport header carries it otherwise.
            authToken: options.authToken && options.helloAuth ? options.authToken : "",
            clientName: "pdd-device/0.1.0",
            maxFrameBytes: options.maxFrameBytes ?? 0,
          },
        },
      }),
    );
    void link.pump();
    // connectTimeoutMs bounded this wait before there was a handshake timeout of its own.
    const handshake = options.handshakeTimeoutMs ?? options.connectTimeoutMs ?? MIN_HANDSHAKE_TIMEOUT_MS;
    link.awaitAck(Math.max(MIN_HANDSHAKE_TIMEOUT_MS, handshake));
    return link;
  }

  /**
   * No HelloAck within `ms` of the Hello: connection error TIMEOUT, reported
   * to the cloud and closed (PDD-CONN-022). Its requests end as for a lost
   * connection; they were never started and may go elsewhere.
   */
  private awaitAck(ms: number): void {
    const timer = setTimeout(() => {
      if (this.ack || this.lostWith) return;
      const err = new PddError(ErrorCode.TIMEOUT, `no HelloAck within ${ms} ms (PDD-CONN-022)`);
      void this.report(err).then(() => this.stream.close(ErrorCode.TIMEOUT).catch(() => undefined));
      this.lose(err);
    }, ms);
    timer.unref();
    const stop = () => clearTimeout(timer);
    this.ackWaiters.push({ resolve: stop, reject: stop });
  }

  get live(): boolean {
    return this.lostWith === undefined;
  }

  /** HelloAck, once it has come. */
  helloAck(): Promise<HelloAck> {
    if (this.ack) return Promise.resolve(this.ack);
    if (this.lostWith) return Promise.reject(this.lostWith);
    return new Promise((resolve, reject) => this.ackWaiters.push({ resolve, reject }));
  }

  /** Reserves the next request ID (strictly increasing, PDD-CONN-013) for `sink`. */
  register(sink: RequestSink): number {
    const id = this.nextId++;
    this.sinks.set(id, sink);
    if (this.lostWith) queueMicrotask(() => sink.onLost(this.lostWith!));
    return id;
  }

  unregister(id: number): void {
    this.sinks.delete(id);
    this.early?.forget(id);
    if (this.sinks.size === 0) for (const w of this.quietWaiters.splice(0)) w();
  }

  /** Resolves once no request of this link is waiting for its End. */
  private quiet(): Promise<void> {
    if (this.sinks.size === 0) return Promise.resolve();
    return new Promise((r) => this.quietWaiters.push(r));
  }
  private quietWaiters: (() => void)[] = [];

  async send(frame: DeviceFrame): Promise<void> {
    if (this.lostWith) throw this.lostWith;
    this.early?.sent(frame);
    await this.stream.send(frame);
  }

  /** Measures one round trip with Ping/Pong, in ms. */
  async ping(timeoutMs = 5_000): Promise<number> {
    const nonce = BigInt(Math.floor(Math.random() * 2 ** 52));
    const t0 = performance.now();
    const done = new Promise<number>((resolve, reject) => {
      this.pongWaiters.set(nonce, () => resolve(performance.now() - t0));
      setTimeout(() => reject(new PddError(ErrorCode.TIMEOUT, "no Pong")), timeoutMs).unref();
    });
    await this.send(
      create(DeviceFrameSchema, { body: { case: "ping", value: { nonce, sentAtUs: BigInt(Math.round(t0 * 1000)) } } }),
    );
    return done.finally(() => this.pongWaiters.delete(nonce));
  }

  /**
   * Says Goodbye, waits for the End of every request still open, then closes
   * (on gRPC a half-close: the device sends nothing more, PDD-CONN-026). A
   * cloud that does not take part (silent, gone) delays it at most `graceMs`.
   */
  async close(graceMs = 2_000): Promise<void> {
    if (this.lostWith) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    const polite = (async () => {
      await this.stream
        .send(create(DeviceFrameSchema, { body: { case: "goodbye", value: { reason: "done" } } }))
        .catch(() => undefined);
      await this.quiet();
      await this.stream.close();
    })();
    await Promise.race([polite, late]).finally(() => clearTimeout(timer));
    // Past the grace, requests still without their End do not hold the close.
    for (const w of this.quietWaiters.splice(0)) w();
    polite.catch(() => undefined);
    this.lose(new PddError(ErrorCode.UNAVAILABLE, "connection closed by the device", { local: "ERR_CLOSED" }));
  }

  private lose(error: PddError): void {
    if (this.lostWith) return;
    this.lostWith = error;
    for (const w of this.ackWaiters.splice(0)) w.reject(error);
    for (const s of [...this.sinks.values()]) s.onLost(error);
    this.sinks.clear();
  }

  private deliver(id: number, frame: CloudFrame): void {
    const sink = this.sinks.get(id);
    if (!sink) return;
    for (const f of this.early ? this.early.route(id, frame) : [frame]) sink.onFrame(f);
  }

  private async pump(): Promise<void> {
    let fromCloud = false; // a connection Error the cloud sent: nothing to report back
    try {
      for await (const frame of this.stream) {
        const b = frame.body;
        switch (b.case) {
          case "helloAck":
            checkAckLimits(b.value);
            this.ack = b.value;
            for (const w of this.ackWaiters.splice(0)) w.resolve(b.value);
            break;
          case "pong":
            this.pongWaiters.get(b.value.nonce)?.(performance.now());
            break;
          case "goodbye":
            // Draining: requests in progress still end normally; new ones go elsewhere.
            this.draining = true;
            break;
          case "error":
            if (b.value.requestId === 0 && b.value.code !== ErrorCode.DUPLICATE_REQUEST_ID) {
              fromCloud = true;
              const code = receivedCode(b.value.code, "conn", "cloud"); // PDD-ERR-003
              throw new PddError(code, b.value.message, { local: "ERR_REMOTE", retryable: b.value.retryable });
            }
            this.deliver(b.value.requestId, frame);
            break;
          default: {
            const id = (b.value as { requestId?: number } | undefined)?.requestId;
            if (id !== undefined) this.deliver(id, frame);
          }
        }
      }
      const info = await this.stream.closed;
      this.lose(
        new PddError(
          info.code || ErrorCode.UNAVAILABLE,
          `connection closed: ${info.reason || (info.abrupt ? "lost" : "closed")}`,
          { local: "ERR_CLOSED" },
        ),
      );
    } catch (e) {
      const err = PddError.from(e, ErrorCode.PROTOCOL_VIOLATION);
      // Reported before the requests hear of the loss: one of them may close the connection.
      if (!fromCloud) await this.report(err);
      this.lose(err);
      await this.stream.close(err.code).catch(() => undefined);
    }
  }

  /** A connection error this device detected goes to the cloud before the close (PDD-CONN-023). */
  private async report(err: PddError): Promise<void> {
    const message = Buffer.from(err.rawMessage).subarray(0, 1024).toString("utf8"); // PDD-SEC-007
    await this.stream
      .send(create(DeviceFrameSchema, { body: { case: "error", value: { requestId: 0, code: err.code, message } } }))
      .catch(() => undefined);
  }

  /** Set when the cloud sent Goodbye: start no new requests here. */
  draining = false;
}

/** A HelloAck announcing limits below their minimums is connection error INVALID_ARGUMENT (PDD-CONN-029). */
function checkAckLimits(ack: HelloAck): void {
  const l = ack.limits;
  if (!l) return;
  if (l.maxFrameBytes > 0 && l.maxFrameBytes < MIN_MAX_FRAME_BYTES)
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      `HelloAck.limits.max_frame_bytes ${l.maxFrameBytes} is below ${MIN_MAX_FRAME_BYTES} (PDD-MSG-012)`,
    );
  if (l.maxKvChunkBytes > 0 && l.maxKvChunkBytes < MIN_KV_CHUNK_BYTES)
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      `HelloAck.limits.max_kv_chunk_bytes ${l.maxKvChunkBytes} is below ${MIN_KV_CHUNK_BYTES} (PDD-KV-014)`,
    );
}

function isSafeForHello(url: string): boolean {
  const u = new URL(url);
  return (
    u.protocol === "wss:" ||
    u.protocol === "grpcs:" ||
    u.protocol === "https:" ||
    ["127.0.0.1", "localhost", "[::1]"].includes(u.hostname)
  );
}
