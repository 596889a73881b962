/**
 * One suite, every binding: the same cases run against WebSocket (cleartext
 * and TLS), gRPC (h2c and TLS) and WebTransport (both codecs).
 */
import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema, ErrorCode, PddError } from "../proto/index.js";
import type { CloudStream, DeviceStream, PddServer, ServerOptions } from "./message-stream.js";
import { startNetem } from "./netem.js";
import { BINDINGS, type Binding } from "./test/bindings.js";
import { createSelfSignedCertificate, type SelfSignedCertificate } from "./tls.js";

const MiB = 1 << 20;
const progress = (i: number) =>
  create(DeviceFrameSchema, { body: { case: "progress", value: { requestId: 1, prefilledTokens: i } } });
const batch = (i: number) =>
  create(CloudFrameSchema, {
    body: {
      case: "tokenBatch",
      value: { requestId: 1, startIndex: i, tokens: [{ id: i, piece: new Uint8Array([0x61]) }] },
    },
  });
const kvChunk = (offset: number, data: Uint8Array, total: number, sha?: Uint8Array) =>
  create(CloudFrameSchema, {
    body: {
      case: "kvChunk",
      value: {
        requestId: 1,
        offset: BigInt(offset),
        totalBytes: BigInt(total),
        data,
        crc32: crc32(data),
        imageSha256: sha ?? new Uint8Array(),
      },
    },
  });

/** A server whose connections the test takes one at a time. */
async function serve(b: Binding, cert: SelfSignedCertificate, extra: Partial<ServerOptions> = {}) {
  const waiting: ((s: CloudStream) => void)[] = [];
  const ready: CloudStream[] = [];
  const server: PddServer = await b.serve(
    {
      ...extra,
      onConnection: (s) => {
        const w = waiting.shift();
        if (w) w(s);
        else ready.push(s);
      },
    },
    cert,
  );
  const next = () =>
    new Promise<CloudStream>((resolve) => (ready.length > 0 ? resolve(ready.shift()!) : waiting.push(resolve)));
  return { server, next };
}

async function take<T>(it: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

let cert: SelfSignedCertificate;
beforeAll(async () => {
  cert = await createSelfSignedCertificate();
});

describe.each(BINDINGS)("$name", (b) => {
  let server: PddServer;
  let next: () => Promise<CloudStream>;
  beforeAll(async () => {
    ({ server, next } = await serve(b, cert));
  });
  afterAll(async () => {
    await server.close(200);
  });

  it("preserves frame order in both directions", async () => {
    const device = await b.connect(server.url, {}, cert);
    const cloud = await next();
    const N = 1000;
    for (let i = 0; i < N; i++) await device.send(progress(i));
    const up = await take(cloud[Symbol.asyncIterator](), N);
    expect(up.map((f) => (f.body.case === "progress" ? f.body.value.prefilledTokens : -1))).toEqual([
      ...Array(N).keys(),
    ]);
    for (let i = 0; i < N; i++) await cloud.send(batch(i));
    const down = await take(device[Symbol.asyncIterator](), N);
    expect(down.map((f) => (f.body.case === "tokenBatch" ? f.body.value.startIndex : -1))).toEqual([
      ...Array(N).keys(),
    ]);
    expect(cloud.codec).toBe(b.codec);
    await device.close();
  });

  it("moves a 64 MiB KV image in 1 MiB chunks and its checksums verify", async () => {
    const device = await b.connect(server.url, {}, cert);
    const cloud = await next();
    const total = 64 * MiB;
    const image = new Uint8Array(total);
    for (let i = 0; i < total; i += 4096) image[i] = (i / 4096) & 0xff;
    const sha = createHash("sha256").update(image).digest();
    const sending = (async () => {
      for (let off = 0; off < total; off += MiB) {
        const last = off + MiB >= total;
        await cloud.send(kvChunk(off, image.subarray(off, off + MiB), total, last ? sha : undefined), {
          bulk: { requestId: 1, last },
        });
      }
    })();
    const hash = createHash("sha256");
    let received = 0;
    for await (const f of device) {
      if (f.body.case !== "kvChunk") continue;
      const c = f.body.value;
      expect(Number(c.offset)).toBe(received);
      expect(crc32(c.data)).toBe(c.crc32);
      hash.update(c.data);
      received += c.data.length;
      if (received === total) {
        expect(Buffer.from(c.imageSha256).equals(sha)).toBe(true);
        break;
      }
    }
    await sending;
    expect(hash.digest().equals(sha)).toBe(true);
    await device.close();
  });

  it("makes a fast sender wait for a slow reader, with bounded buffers", async () => {
    const device = await b.connect(server.url, {}, cert);
    const cloud = await next();
    const chunk = new Uint8Array(MiB);
    // Several times what the buffers on the way hold (the sender stalls after 1 to 15 MiB).
    const attempt = 64;
    let sent = 0;
    let maxBuffered = 0;
    const sending = (async () => {
      for (let i = 0; i < attempt; i++) {
        await cloud.send(kvChunk(i * MiB, chunk, attempt * MiB), { bulk: { requestId: 1, last: i === attempt - 1 } });
        sent++;
        maxBuffered = Math.max(maxBuffered, cloud.bufferedAmount);
      }
    })();
    // The device reads nothing until the sender has made no progress for 20 turns of the event loop
    // (each lets every socket event in, so a starved process only waits longer) and 200 ms.
    let last = -1;
    let quietTurns = 0;
    let quietSince = performance.now();
    while (sent < attempt && (quietTurns < 20 || performance.now() - quietSince < 200)) {
      await new Promise((r) => setTimeout(r, 10));
      maxBuffered = Math.max(maxBuffered, cloud.bufferedAmount);
      if (sent === last) quietTurns++;
      else [last, quietTurns, quietSince] = [sent, 0, performance.now()];
    }
    const sentWhileStalled = sent;
    console.log(
      `${b.name}: sender stalled after ${sentWhileStalled} MiB; max sender buffer ${(maxBuffered / MiB).toFixed(2)} MiB`,
    );
    expect(sentWhileStalled).toBeLessThan(attempt);
    expect(maxBuffered).toBeLessThanOrEqual(2 * MiB + 4096);
    let got = 0;
    for await (const f of device) {
      if (f.body.case === "kvChunk" && ++got === attempt) break;
    }
    await sending;
    expect(got).toBe(attempt);
    await device.close();
  });

  it("closes gracefully from the device, and the cloud sees it", async () => {
    const device = await b.connect(server.url, {}, cert);
    const cloud = await next();
    await device.send(progress(1));
    const frames = cloud[Symbol.asyncIterator]();
    await take(frames, 1);
    await device.close(ErrorCode.UNSPECIFIED, "done");
    if (b.name.startsWith("grpc")) {
      // A half-close: the cloud's frames end, but the call is open until the cloud ends it (PDD-CONN-026).
      expect((await frames.next()).done).toBe(true);
      let ended = false;
      cloud.onClose(() => (ended = true));
      expect(ended).toBe(false);
      await cloud.close();
    }
    const info = await cloud.closed;
    expect(info).toMatchObject({ abrupt: false, code: ErrorCode.UNSPECIFIED });
    if (!b.name.startsWith("grpc")) expect(info.initiator).toBe("peer");
    expect((await device.closed).initiator).toBe("local");
  });

  it("closes from the cloud with a code and a reason", async () => {
    const device = await b.connect(server.url, {}, cert);
    const cloud = await next();
    await cloud.close(ErrorCode.UNAVAILABLE, "draining");
    const info = await device.closed;
    expect(info).toMatchObject({ initiator: "peer", abrupt: false, code: ErrorCode.UNAVAILABLE });
    if (b.closeCarriesCode) expect(info.reason).toBe("draining");
  });

  it("cancels (aborts) from either side, and the other side learns of it", async () => {
    const d1 = await b.connect(server.url, {}, cert);
    const c1 = await next();
    d1.abort("user gone");
    const seenByCloud = await c1.closed;
    expect(seenByCloud.initiator).toBe("peer");
    expect(seenByCloud.abrupt || seenByCloud.code === ErrorCode.CANCELLED).toBe(true);
    const d2 = await b.connect(server.url, {}, cert);
    const c2 = await next();
    c2.abort("cloud gone");
    const seenByDevice = await d2.closed;
    expect(seenByDevice.initiator).toBe("peer");
    expect(seenByDevice.abrupt || seenByDevice.code === ErrorCode.CANCELLED).toBe(true);
  });

  it("refuses a frame over the limit with FRAME_TOO_LARGE", async () => {
    const { server: small, next: nextSmall } = await serve(b, cert, { maxFrameBytes: 64 * 1024 });
    try {
      const device = await b.connect(small.url, {}, cert);
      const cloud = await nextSmall();
      // The cloud side behaves as a peer must (PDD-CONN-016): close with the error's code.
      const failure = (async () => {
        try {
          for await (const _ of cloud);
        } catch (e) {
          const err = e as PddError;
          await cloud.close(err.code, err.rawMessage);
          return err;
        }
        return undefined;
      })();
      const huge = create(DeviceFrameSchema, {
        body: { case: "hello", value: { clientName: "x".repeat(100 * 1024) } },
      });
      await device.send(huge).catch(() => undefined);
      const err = await failure;
      expect(err).toBeInstanceOf(PddError);
      expect(err!.code).toBe(ErrorCode.FRAME_TOO_LARGE);
      expect((await device.closed).code).toBe(ErrorCode.FRAME_TOO_LARGE);
    } finally {
      await small.close(200);
    }
  });

  it("holds the first frame to 64 KiB and every later one to the connection's limit (PDD-LIMIT-002)", async () => {
    const hello = (bytes: number) =>
      create(DeviceFrameSchema, { body: { case: "hello", value: { clientName: "x".repeat(bytes) } } });
    const refused = await b.connect(server.url, {}, cert);
    const c1 = await next();
    // The first thing the cloud side sees: the refusal, or (wrongly) the frame itself.
    const failure = (async () => {
      try {
        for await (const _ of c1) return "the 65 KiB frame was delivered";
      } catch (e) {
        return e as PddError;
      }
      return undefined;
    })();
    await refused.send(hello(65 * 1024)).catch(() => undefined);
    if (b.name.startsWith("grpc")) {
      // The server ends the call before Connect reads the message: the device sees the status (PDD-GRPC-004).
      const delivered = failure.then((f) => (typeof f === "string" ? f : new Promise<never>(() => {})));
      const seen = await Promise.race([refused.closed.then((i) => i.code), delivered]);
      expect([ErrorCode.FRAME_TOO_LARGE, ErrorCode.RESOURCE_EXHAUSTED]).toContain(seen);
      c1.abort();
    } else expect(await failure).toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE });
    refused.abort();
    const served = await b.connect(server.url, {}, cert);
    const c2 = await next();
    await served.send(hello(60 * 1024));
    await served.send(hello(MiB)); // a second frame: the 4 MiB limit
    const got = await take(c2[Symbol.asyncIterator](), 2);
    expect(got.map((f) => (f.body.case === "hello" ? f.body.value.clientName.length : 0))).toEqual([60 * 1024, MiB]);
    await served.close();
  });

  it("refuses a missing or wrong credential, and admits the right one", async () => {
    const { server: guarded, next: nextGuarded } = await serve(b, cert, { authenticate: (t) => t === "sesame" });
    try {
      for (const authToken of [undefined, "wrong"]) {
        const outcome = await b.connect(guarded.url, authToken ? { authToken } : {}, cert).then(
          async (s: DeviceStream) => {
            await s.send(progress(0)).catch(() => undefined);
            return (await s.closed).code;
          },
          (e: PddError) => e.code,
        );
        expect(outcome).toBe(ErrorCode.UNAUTHENTICATED);
      }
      expect(guarded.connections).toBe(0);
      const device = await b.connect(guarded.url, { authToken: "sesame" }, cert);
      const cloud = await nextGuarded();
      expect(cloud.authToken).toBe("sesame");
      await device.send(progress(7));
      const [f] = await take(cloud[Symbol.asyncIterator](), 1);
      expect(f?.body.case).toBe("progress");
      await device.close();
    } finally {
      await guarded.close(200);
    }
  });

  it("carries a session and a 2 MiB burst intact through an emulated 40 ms, 100 Mbit/s path", async () => {
    const { server: own, next: nextOwn } = await serve(b, cert);
    const path = await startNetem({ target: { port: own.port }, rttMs: 40, bandwidthMbps: 100, jitterMs: 10, seed: 3 });
    try {
      const device = await b.connect(path.via(own.url), {}, cert);
      const cloud = await nextOwn();
      await device.send(progress(7));
      expect((await take(cloud[Symbol.asyncIterator](), 1))[0]?.body.case).toBe("progress");
      // Incompressible bytes, so what crosses the path is the full size on every binding.
      const parts = Array.from({ length: 32 }, (_, i) => Object.assign(randomBytes(64 * 1024), { 0: i }));
      const sending = (async () => {
        for (const [i, d] of parts.entries()) await cloud.send(kvChunk(i * d.length, d, 32 * d.length));
      })();
      const got = await take(device[Symbol.asyncIterator](), 32);
      await sending;
      // KV chunks may travel on their own streams (spec §10), so they are placed by offset.
      const placed = got
        .map((f) =>
          f.body.case === "kvChunk"
            ? [Number(f.body.value.offset), f.body.value.data[0], f.body.value.data.length]
            : [],
        )
        .sort((x, y) => x[0]! - y[0]!);
      expect(placed).toEqual(parts.map((d, i) => [i * d.length, i, d.length]));
      expect(path.stats.downBytes).toBeGreaterThan(2 << 20);
      await device.close();
    } finally {
      await path.close();
      await own.close(200);
    }
  });

  it("detects an abrupt peer loss through keep-alive, on both sides", async () => {
    const opts = { pingIntervalMs: 100, deadPeerTimeoutMs: 600 };
    const { server: s, next: nextS } = await serve(b, cert, opts);
    const proxy = await startNetem({ target: { port: s.port }, rttMs: 0 });
    try {
      const url = proxy.via(s.url);
      const device = await b.connect(url, opts, cert);
      const cloud = await nextS();
      await device.send(progress(1));
      await take(cloud[Symbol.asyncIterator](), 1);
      const t0 = performance.now();
      proxy.blackhole();
      const [d, c] = await Promise.all([device.closed, cloud.closed]);
      console.log(
        `${b.name}: loss detected by device in ${(performance.now() - t0).toFixed(0)} ms (dead-peer timeout 600 ms)`,
      );
      expect(d.abrupt).toBe(true);
      expect(c.abrupt).toBe(true);
    } finally {
      await proxy.close();
      await s.close(200);
    }
  });
});
