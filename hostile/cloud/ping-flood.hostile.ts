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
import { cpuShare, stallBoundMs } from "../harness/stall.js";
import { pollUntil } from "../harness/wait.js";
import { decodeCloud } from "../../conformance/wire.js";
import { MAX_PINGS_PER_SECOND } from "../../proto/index.js";
import { fullAnswer, TRANSPORTS, type Binding } from "../harness/normal-device.js";
import { grpcCall, grpcConnection } from "../harness/raw-grpc.js";
import { nonReadingWebSocket, nonReadingWebTransport, type RawDevice } from "../harness/raw-peers.js";

const fixture = new CloudFixture();
afterAll(() => fixture.stop());

/** A flooding device, and whether the cloud has told it (or shown it) it is cut off. */
interface Flooder extends RawDevice {
  /** The cloud ended the connection: an Error RESOURCE_EXHAUSTED read, or the connection closed. */
  cutOff: () => boolean;
  /** The cloud's Error RESOURCE_EXHAUSTED was read (only a flooder that reads can). */
  refused: () => boolean;
}

async function flooder(cloud: CloudProcess, b: Binding, reads: boolean): Promise<Flooder> {
  let dev: RawDevice;
  let closed = false;
  let refused = false;
  const onFrame = (f: Uint8Array) => {
    const frame = decodeCloud(f, b.codec);
    if (frame.body === "error" && (frame.error as { code?: string }).code === "ERROR_CODE_RESOURCE_EXHAUSTED")
      refused = true;
  };
  if (b.key === "ws") {
    const ws = await nonReadingWebSocket(cloud.urls.ws, b.codec);
    ws.ws.on("close", () => (closed = true));
    dev = ws;
  } else if (b.key === "webtransport") {
    const wt = await nonReadingWebTransport(cloud.urls.webtransport, b.codec, cloud.certSha256);
    void wt.session.closed.catch(() => undefined).then(() => (closed = true));
    dev = wt;
  } else {
    const session = grpcConnection(cloud.urls.grpc, reads ? {} : { windowBytes: 0 });
    const call = grpcCall(session);
    void call.status.then((status) => {
      closed = true;
      if (status === "8") refused = true; // RESOURCE_EXHAUSTED's gRPC status
    });
    dev = {
      send: (f) => call.send(f),
      flushed: async () => {
        while (!call.stream.destroyed && call.stream.writableLength > 0) await new Promise((r) => setTimeout(r, 2));
      },
      vanish: () => session.destroy(),
      read: (onFrame) =>
        void (async () => {
          for (;;) {
            const m = await call.messages.next(1_000);
            if (m) onFrame(m);
            else if (closed) return;
          }
        })(),
    };
  }
  if (reads) dev.read?.(onFrame);
  return { ...dev, cutOff: () => closed || refused, refused: () => refused };
}

/**
 * Pings a flood sends at most: twenty times the limit. A flooder stops once the cloud has cut it off; one that
 * cannot see it (it does not read) stops here, so that its own sending does not stall the normal device it shares
 * this process with (before, it sent 142,500 Pings into a closed socket in 0.8 s).
 */
const FLOOD_CAP = 20 * MAX_PINGS_PER_SECOND;

/** A normal device's answer paced at 20 ms per token, with the flood running from its first token. */
async function underFlood(cloud: CloudProcess, b: Binding, reads: boolean) {
  const dev = await flooder(cloud, b, reads);
  dev.send(hello(b.codec));
  let pings = 0;
  let flood: Promise<void> | undefined;
  // Encoded once: the normal device shares this process, and encoding 20,000 Pings would stall it here.
  const burst = Array.from({ length: 500 }, (_, i) => ping(b.codec, i + 1));
  const answer = await fullAnswer(cloud, b, {
    budget: 64,
    tpotUs: 20_000,
    deadlineMs: 120_000,
    onToken: () => {
      flood ??= (async () => {
        while (pings < FLOOD_CAP && !dev.cutOff()) {
          for (const p of burst) dev.send(p);
          pings += burst.length;
          await dev.flushed();
          // Once the cloud has closed the flooder, flushed() may return at once: a turn of the event loop lets the
          // close be seen.
          await new Promise((r) => setImmediate(r));
        }
      })();
    },
  });
  await flood;
  // A reading flooder has been told (PDD-DOS-001); its Error may still be on its way after the normal answer.
  if (reads)
    await pollUntil(
      () => dev.refused(),
      (r) => r,
      10_000,
    );
  dev.vanish();
  return { answer, pings, refused: dev.refused() };
}

describe("item 8: a Ping flood does not starve other connections", () => {
  for (const reads of [true, false])
    eachBinding(TRANSPORTS, undefined, `a flooder that ${reads ? "reads" : "never reads"}`, async (b) => {
      const { cloud, base } = await fixture.get();
      const alone = await fullAnswer(cloud, b, { budget: 64, tpotUs: 20_000 });
      const shareBefore = cpuShare();
      const { answer, pings, refused } = await underFlood(cloud, b, reads);
      const share = Math.min(shareBefore, cpuShare());
      const bound = stallBoundMs(share, alone.maxGapMs, base.maxGapMs);
      const after = await fixture.check(b);
      record({
        case: `8 ping flood ${reads ? "reading" : "not reading"} ${b.name}`,
        pings,
        refused,
        maxGapMs: answer.maxGapMs,
        boundMs: bound,
        cpuShare: share,
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
      // The flooder is cut off with RESOURCE_EXHAUSTED (PDD-DOS-001) where it can see so.
      if (reads) expect(refused).toBe(true);
      // Paced at 20 ms: a gap over 250 ms of CPU time (or five times the idle one) is a stall the user sees.
      expect(answer.maxGapMs).toBeLessThan(bound);
      expect(after.healthy).toBe(true);
    });
});
