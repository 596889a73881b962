/**
 * Issue 13, item 3: a KV slow reader pinned its sequence. A device asks for
 * a KV image and stops reading; the cloud's KV send waited on flow control
 * forever (after KV_GRACE_MS it still awaited the transfer; no write
 * deadline), holding the sequence, so with one sequence every other device
 * waited. Now the sequence is released once the image is exported
 * (PDD-DOS-003) and a connection that takes no byte for 10 s ends
 * (PDD-DOS-002).
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
import { pollUntil } from "../harness/wait.js";

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
      // A device that reads nothing holds its sequence until the write deadline ends its connection (PDD-DOS-002:
      // its tokens cannot leave either); one that takes its tokens but not its image, only until the image is
      // exported (PDD-DOS-003). Either way the other device is answered within the write deadline, not after the
      // 10 s KV grace on top of it.
      const other = await fullAnswer(cloud, b, { deadlineMs: WRITE_DEADLINE_MS + 5_000 });
      const otherMs = performance.now() - t0;
      const heldWhileAttacking = await cloud.held();
      // On gRPC (window 0) nothing the cloud sends ever leaves: the write deadline must end the connection while
      // the attacker is still there. (On WebSocket and WebTransport the buffers on the way take the whole image,
      // the request ends, and the idle connection is the device's to keep.)
      const reaped =
        b.key === "grpc"
          ? await pollUntil(
              () => cloud.held(),
              (h) => h.connections === 0,
              10_000 + WRITE_DEADLINE_MS + 10_000,
              250,
            )
          : undefined;
      dev.vanish();
      const after = await fixture.check(b);
      record({
        case: `3 KV slow reader ${b.name}`,
        other: { ok: other.ok, correct: other.correct, ms: otherMs, error: other.error },
        heldWhileAttacking,
        attackerReaped: reaped && { ok: reaped.ok, ms: performance.now() - t0 },
        after: {
          held: after.held,
          live: after.live.ok,
          rssMiB: [after.rssBeforeMiB, after.rssAfterMiB],
          heapMiB: [after.heapBeforeMiB, after.heapAfterMiB],
        },
      });
      expect(other).toMatchObject({ ok: true, correct: true });
      if (reaped) expect(reaped.ok).toBe(true);
      expect(after.healthy).toBe(true);
    },
  );
});
