/**
 * Issue 13, item 8: a Ping flood starves every other stream. The cloud
 * answers each Ping in its connection loop with no rate limit and no yield to
 * the event loop between frames (reference-cloud/connection.ts `onFrame`),
 * so one connection's Pings delay every other connection's tokens.
 */
import { eachBinding } from "../harness/cases.js";
import { afterAll, describe, expect } from "vitest";
import { CloudFixture } from "../harness/aftermath.js";
import type { CloudProcess } from "../harness/cloud-process.js";
import { record } from "../harness/evidence.js";
import { hello, ping } from "../harness/frames.js";
import { fullAnswer, TRANSPORTS, type Binding } from "../harness/normal-device.js";
import { grpcCall, grpcConnection } from "../harness/raw-grpc.js";
import { nonReadingWebSocket, nonReadingWebTransport, type RawDevice } from "../harness/raw-peers.js";

const fixture = new CloudFixture();
afterAll(() => fixture.stop());

async function flooder(cloud: CloudProcess, b: Binding, reads: boolean): Promise<RawDevice> {
  let dev: RawDevice;
  if (b.key === "ws") dev = await nonReadingWebSocket(cloud.urls.ws, b.codec);
  else if (b.key === "webtransport")
    dev = await nonReadingWebTransport(cloud.urls.webtransport, b.codec, cloud.certSha256);
  else {
    const session = grpcConnection(cloud.urls.grpc, reads ? {} : { windowBytes: 0 });
    const call = grpcCall(session);
    dev = {
      send: (f) => call.send(f),
      flushed: async () => {
        while (!call.stream.destroyed && call.stream.writableLength > 0) await new Promise((r) => setTimeout(r, 2));
      },
      vanish: () => session.destroy(),
      read: () => undefined, // node:http2 reads (and drops) what comes unless the window is 0
    };
  }
  if (reads) dev.read?.(() => undefined);
  return dev;
}

/** A normal device's answer paced at 10 ms per token, with the flood running from its first token to its End. */
async function underFlood(cloud: CloudProcess, b: Binding, reads: boolean) {
  const dev = await flooder(cloud, b, reads);
  dev.send(hello(b.codec));
  let flooding = true;
  let pings = 0;
  let flood: Promise<void> | undefined;
  const answer = await fullAnswer(cloud, b, {
    budget: 64,
    tpotUs: 20_000,
    deadlineMs: 120_000,
    onToken: () => {
      flood ??= (async () => {
        while (flooding) {
          for (let i = 0; i < 500; i++) dev.send(ping(b.codec, ++pings));
          await dev.flushed();
          // Once the cloud has closed the flooder, flushed() returns at once: without a turn of the event loop
          // this loop would spin on microtasks (and ran this test process out of memory).
          await new Promise((r) => setImmediate(r));
        }
      })();
    },
  });
  flooding = false;
  await flood;
  dev.vanish();
  return { answer, pings };
}

describe("item 8: a Ping flood does not starve other connections", () => {
  for (const reads of [true, false])
    eachBinding(TRANSPORTS, undefined, `a flooder that ${reads ? "reads" : "never reads"}`, async (b) => {
      const { cloud, base } = await fixture.get();
      const alone = await fullAnswer(cloud, b, { budget: 64, tpotUs: 20_000 });
      const { answer, pings } = await underFlood(cloud, b, reads);
      const after = await fixture.check(b);
      record({
        case: `8 ping flood ${reads ? "reading" : "not reading"} ${b.name}`,
        pings,
        maxGapMs: answer.maxGapMs,
        aloneMaxGapMs: alone.maxGapMs,
        answerMs: answer.ms,
        aloneMs: alone.ms,
        ok: answer.ok && answer.correct,
        held: after.held,
        rssMiB: [after.rssBeforeMiB, after.rssAfterMiB],
        heapMiB: [after.heapBeforeMiB, after.heapAfterMiB],
        healthy: after.healthy,
      });
      expect(answer).toMatchObject({ ok: true, correct: true });
      // Paced at 10 ms: a gap over 250 ms (or five times the idle one) is a stall the user sees.
      expect(answer.maxGapMs).toBeLessThan(Math.max(250, 5 * alone.maxGapMs, 5 * base.maxGapMs));
      expect(after.healthy).toBe(true);
    });
});
