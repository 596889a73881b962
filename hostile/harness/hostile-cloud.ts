/**
 * A hostile cloud for the reference device: the conformance suite's raw
 * listener (bytes only) playing a cloud that announces the device's own model
 * — so the device asks for KV and prefills the cloud's token IDs — and then
 * sends what a scenario tells it to: real greedy tokens, with one thing wrong.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { listen, type AcceptedSession, type RawServer } from "../../conformance/raw-server.js";
import { isClose, Probe } from "../../conformance/probe.js";
import { encodeCloud, type Frame } from "../../conformance/wire.js";
import { createSelfSignedCertificate } from "../../transports/index.js";
import type { Binding } from "./normal-device.js";

export interface HostileServer {
  server: RawServer;
  /** PEM of the WebTransport certificate (the device's --ca). */
  caPem?: string;
}

export async function hostileServer(b: Binding): Promise<HostileServer> {
  const url = { ws: "ws://127.0.0.1:0", grpc: "grpc://127.0.0.1:0", webtransport: "https://127.0.0.1:0/pdd/v1" }[b.key];
  const tls = b.key === "webtransport" ? await createSelfSignedCertificate() : undefined;
  return { server: await listen({ url, tls }), caPem: tls?.cert };
}

export interface Exchange {
  p: Probe;
  hello: Frame;
  request: Frame;
  id: number;
  /** KV was asked for (the device offers it only with the same model). */
  kvAsked: boolean;
  budgetAsked: number;
  maxTokens: number;
  initialCredit: number;
}

const field = <T>(f: Frame, path: string): T =>
  path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], f) as T;

/** Accepts the device, answers its Hello as a cloud running the device's own model, and reads its request. */
export async function greetDevice(s: AcceptedSession, o: { kv: boolean; waitMs?: number }): Promise<Exchange> {
  const p = new Probe(s, s.codec, o.waitMs ?? 30_000, "cloud");
  const hello = await p.until((f) => f.body === "hello", "the device's Hello");
  const dm = field<Record<string, unknown>>(hello, "hello.deviceModel");
  p.send({
    helloAck: {
      version: { major: 1, minor: 0 },
      codec: s.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK",
      limits: {
        maxFrameBytes: 16 << 20,
        maxPromptTokens: 8192,
        maxConcurrentRequests: 4,
        maxCloudTokenBudget: 256,
        maxKvChunkBytes: 1 << 20,
        idleTimeoutMs: 60_000,
        maxRequestDurationMs: 300_000,
      },
      cloudModel: { ...dm, name: "hostile" },
      capabilities: { kvChunks: o.kv, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"], refinement: false, tokenIds: true },
      serverName: "pdd-hostile",
    },
  });
  const request = await p.until((f) => f.body === "prefillRequest", "the device's PrefillRequest");
  return {
    p,
    hello,
    request,
    id: field<number>(request, "prefillRequest.requestId"),
    kvAsked: field(request, "prefillRequest.kv") != null,
    budgetAsked: field<number>(request, "prefillRequest.cloudTokenBudget"),
    maxTokens: field<number>(request, "prefillRequest.maxTokens"),
    initialCredit: Number(field<string>(request, "prefillRequest.kv.initialCreditBytes") ?? 0),
  };
}

export const tokenFrame = (id: number, index: number, token: { id: number; piece: Uint8Array }): Frame =>
  index === 0
    ? { firstToken: { requestId: id, token: { id: token.id, piece: Buffer.from(token.piece) }, prefillUs: 1000 } }
    : { tokenBatch: { requestId: id, startIndex: index, tokens: [{ id: token.id, piece: Buffer.from(token.piece) }] } };

export function accepted(x: Exchange, promptTokens: number, budget: number, kv?: { totalBytes: number }): Frame {
  return {
    accepted: {
      requestId: x.id,
      queuePosition: 0,
      promptTokens,
      cloudTokenBudget: budget,
      kv: x.kvAsked
        ? { granted: kv !== undefined, refusal: kv ? "ERROR_CODE_UNSPECIFIED" : "ERROR_CODE_UNSUPPORTED_FEATURE" }
        : undefined,
      kvFormat: kv ? "KV_FORMAT_LLAMA_SEQ_STATE" : undefined,
      kvTotalBytes: kv ? String(kv.totalBytes) : undefined,
    },
  };
}

/** KvChunk frames for `image` (CRC-32 each, SHA-256 on the last): checksums right, so only the content is hostile. */
export function kvChunks(id: number, image: Uint8Array, tokenCount: number, chunkBytes = 1 << 20): Frame[] {
  const out: Frame[] = [];
  const sha = createHash("sha256").update(image).digest();
  for (let off = 0; off < image.length; off += chunkBytes) {
    const data = Buffer.from(image.subarray(off, off + chunkBytes));
    const last = off + data.length === image.length;
    out.push({
      kvChunk: {
        requestId: id,
        format: "KV_FORMAT_LLAMA_SEQ_STATE",
        tokenCount,
        offset: String(off),
        totalBytes: String(image.length),
        data,
        crc32: crc32(data),
        imageSha256: last ? sha : Buffer.alloc(0),
      },
    });
  }
  return out;
}

/** Waits for the device's Takeover or Cancel (answering Pings), then ends the request as the spec says. */
export async function endAfterTakeover(x: Exchange, sent: number, waitMs = 60_000): Promise<string> {
  const deadline = performance.now() + waitMs;
  while (performance.now() < deadline) {
    const r = await x.p.recv(Math.max(1, deadline - performance.now()));
    if (r === undefined) break;
    if (isClose(r)) return "device closed";
    const f = r as Frame;
    if (f.body === "takeover") {
      const k = field<number>(f, "takeover.index");
      x.p.send({
        end: { requestId: x.id, reason: "END_REASON_TAKEN_OVER", tokenCount: k, usage: { sentTokens: sent } },
      });
      return `takeover ${k}`;
    }
    if (f.body === "cancel") {
      x.p.send({
        end: { requestId: x.id, reason: "END_REASON_CANCELLED", tokenCount: sent, usage: { sentTokens: sent } },
      });
      return `cancel ${field<string>(f, "cancel.code")}`;
    }
  }
  return "nothing";
}

/** KvChunk frames encoded ahead (a 1 MiB frame takes protobufjs ~200 ms): the costly part done before Accepted goes out. */
export function encodeKv(x: Exchange, frames: Frame[]): Uint8Array[] {
  const codec = (x.p.session as AcceptedSession).codec;
  return frames.map((f) => encodeCloud(f, codec));
}

/**
 * Sends encoded KV chunks straight to the session, one per turn of the event
 * loop: not through the probe's frame log (it renders each chunk as JSON),
 * and never in one burst, so the frames before them (Accepted, FirstToken)
 * leave first on the bindings that write asynchronously (gRPC, WebTransport).
 */
export async function sendKvChunks(x: Exchange, encoded: Uint8Array[], end = true): Promise<void> {
  const session = x.p.session as AcceptedSession;
  for (const bytes of encoded) {
    await new Promise((r) => setImmediate(r));
    session.sendKv(x.id, bytes);
  }
  if (end) session.endKv(x.id);
}
