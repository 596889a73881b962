/**
 * Issue 13, item 3: a KV slow reader pins its sequence. A device asks for a
 * KV image and stops reading; the cloud's KV send waits on flow control
 * forever (reference-cloud/request.ts: after KV_GRACE_MS it still `await
 * kvTransfer`; kv-sender.ts has no write deadline), holding the sequence.
 * With one sequence, every other device then waits.
 */
import { eachBinding } from "../harness/cases.js";
import { afterAll, describe, expect } from "vitest";
import { CloudFixture } from "../harness/aftermath.js";
import type { CloudProcess } from "../harness/cloud-process.js";
import { record } from "../harness/evidence.js";
import { frame, hello } from "../harness/frames.js";
import { fullAnswer, localEngine, longPrompt, TRANSPORTS, type Binding } from "../harness/normal-device.js";
import { grpcCall, grpcConnection } from "../harness/raw-grpc.js";
import { nonReadingWebSocket, nonReadingWebTransport, type RawDevice } from "../harness/raw-peers.js";
import { WRITE_DEADLINE_MS } from "../limits.js";

/** One sequence: a pinned sequence is a cloud nobody else can use. */
const fixture = new CloudFixture({ sequences: 1 });
afterAll(() => fixture.stop());

async function nonReading(cloud: CloudProcess, b: Binding): Promise<RawDevice> {
  if (b.key === "ws") return nonReadingWebSocket(cloud.urls.ws, b.codec);
  if (b.key === "webtransport") return nonReadingWebTransport(cloud.urls.webtransport, b.codec, cloud.certSha256);
  const session = grpcConnection(cloud.urls.grpc, { windowBytes: 0 });
  const call = grpcCall(session);
  return {
    send: (f) => call.send(f),
    flushed: async () => undefined,
    vanish: () => {
      call.reset();
      session.destroy();
    },
  };
}

describe("item 3: a device that asks for KV and stops reading does not pin its sequence", () => {
  eachBinding(
    TRANSPORTS,
    undefined,
    "another device is served within the KV grace plus a write deadline",
    async (b) => {
      const { cloud } = await fixture.get();
      const e = await localEngine();
      // ~3,000 prompt tokens: a 1.5 MB image, more than the send path's 1 MiB high-water mark.
      const prompt = await longPrompt(3_000);
      const dev = await nonReading(cloud, b);
      const info = e.info;
      dev.send(
        hello(b.codec, {
          deviceModel: {
            ...info,
            modelFingerprint: Buffer.from(info.modelFingerprint),
            tokenizerFingerprint: Buffer.from(info.tokenizerFingerprint),
          },
        }),
      );
      dev.send(
        frame(b.codec, {
          prefillRequest: {
            requestId: 1,
            text: prompt,
            cloudTokenBudget: 16,
            kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: 1 << 20, initialCreditBytes: String(1 << 30) },
          },
        }),
      );
      const t0 = performance.now();
      // The KV grace is 10 s; a write deadline adds WRITE_DEADLINE_MS; then the sequence must be free.
      const other = await fullAnswer(cloud, b, { deadlineMs: 10_000 + WRITE_DEADLINE_MS + 10_000 });
      const otherMs = performance.now() - t0;
      const heldWhileAttacking = await cloud.held();
      dev.vanish();
      const after = await fixture.check(b);
      record({
        case: `3 KV slow reader ${b.name}`,
        other: { ok: other.ok, correct: other.correct, ms: otherMs, error: other.error },
        heldWhileAttacking,
        after: { held: after.held, live: after.live.ok, rssMiB: [after.rssBeforeMiB, after.rssAfterMiB] },
      });
      expect(other).toMatchObject({ ok: true, correct: true });
      expect(after.healthy).toBe(true);
    },
  );
});
