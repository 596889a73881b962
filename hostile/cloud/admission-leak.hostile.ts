/**
 * Issue 13, item 1: one connection wedged the cloud. A device that never
 * reads fills the cloud's send queue with refusals (cloud_token_budget 0),
 * so the cloud's Pong blocks; four valid requests queue behind it; then the
 * device vanishes. The cloud went on processing the queued frames of the gone
 * connection, admitted them, failed to send Accepted and never gave the
 * admission slots back (request.ts released only `if (slot)`; connection.ts
 * checked its own flag, not the stream's; stream-base.ts resolved blocked
 * senders on close). Now the ticket is given back whatever fails, queued
 * frames of a closed stream are dropped, blocked senders reject, and a peer
 * that does not read its answers stops being read.
 */
import { afterAll, describe, expect } from "vitest";
import { CloudFixture } from "../harness/aftermath.js";
import { eachBinding } from "../harness/cases.js";
import type { CloudProcess } from "../harness/cloud-process.js";
import { record } from "../harness/evidence.js";
import { hello, ping, prefill } from "../harness/frames.js";
import { TRANSPORTS, type Binding } from "../harness/normal-device.js";
import { grpcCall, grpcConnection } from "../harness/raw-grpc.js";
import { nonReadingWebSocket, nonReadingWebTransport, type RawDevice } from "../harness/raw-peers.js";
import { pollUntil } from "../harness/wait.js";

const fixture = new CloudFixture();
afterAll(() => fixture.stop());

/** Refusals it takes to fill the send path past the 1 MiB high-water mark (kernel buffers included). */
const FLOOD: Record<Binding["key"], number> = { grpc: 5_000, ws: 150_000, webtransport: 20_000 };

async function nonReading(cloud: CloudProcess, b: Binding): Promise<RawDevice> {
  if (b.key === "ws") return nonReadingWebSocket(cloud.urls.ws, b.codec);
  if (b.key === "webtransport") return nonReadingWebTransport(cloud.urls.webtransport, b.codec, cloud.certSha256);
  const session = grpcConnection(cloud.urls.grpc, { windowBytes: 0 });
  const call = grpcCall(session);
  return {
    send: (f) => call.send(f),
    flushed: async () => {
      while (!call.stream.destroyed && call.stream.writableLength > 0) await new Promise((r) => setTimeout(r, 5));
    },
    vanish: () => {
      call.reset();
      session.destroy();
    },
  };
}

const errorsSent = async (cloud: CloudProcess): Promise<number> => {
  let n = 0;
  for (const [k, v] of await cloud.metrics()) if (k.startsWith("pdd_errors_total{")) n += v;
  return n;
};

describe("item 1: a connection that never reads, floods, and vanishes leaves no admission slot held", () => {
  eachBinding(TRANSPORTS, "grpc/proto", "the cloud frees every slot", async (b) => {
    const { cloud } = await fixture.get();
    const n = FLOOD[b.key];
    const dev = await nonReading(cloud, b);
    const errors0 = await errorsSent(cloud);
    dev.send(hello(b.codec));
    for (let i = 1; i <= n; i++) {
      dev.send(prefill(b.codec, i, { cloudTokenBudget: 0, text: "x" }));
      if (i % 2000 === 0) await dev.flushed();
    }
    dev.send(ping(b.codec));
    for (let j = 1; j <= 4; j++) dev.send(prefill(b.codec, n + j));
    await dev.flushed();
    // The refusals are counted as the cloud makes them: once all are, the Ping and the four requests are in its
    // queue. A cloud that stops reading a peer that does not read its answers (and ends it at its write deadline,
    // PDD-DOS-002) never counts them all: then the attacker vanishes once the cloud has closed its connection.
    const refused = await pollUntil(
      async () => ({ errors: (await errorsSent(cloud)) - errors0, connections: (await cloud.held()).connections }),
      (r) => r.errors >= n || r.connections === 0,
      30_000,
    );
    dev.vanish();
    const after = await fixture.check(b);
    record({
      case: `1 admission leak ${b.name}`,
      flood: n,
      refusedBeforeVanish: refused.value.errors,
      closedByCloudMs: refused.value.connections === 0 ? refused.ms : null,
      held: after.held,
      released: after.released,
      rssMiB: [after.rssBeforeMiB, after.rssAfterMiB],
      heapMiB: [after.heapBeforeMiB, after.heapAfterMiB],
      live: after.live,
    });
    expect(after.held).toMatchObject({ sequences: 0, queued: 0 });
    expect(after.live).toMatchObject({ ok: true, correct: true });
    expect(after.memoryOk).toBe(true);
  });
});
