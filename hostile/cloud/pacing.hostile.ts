/**
 * Issue 13, item 2: pacing pins sequences. target_tpot_us = 2^32−1 made the
 * cloud sleep 2,147 s between tokens (the pacing `setTimeout` that nothing
 * woke); Cancel, a disconnect and SIGTERM did not end the sleep, and
 * max_request_duration_ms was only checked after a token.
 *
 * Spec 1.1 refuses a pace over 1 s per token (PDD-REQ-009), so the hint
 * alone can no longer ask for hours. The halts are checked against the
 * slowest pace still allowed (1,000,000 µs) on a cloud that sends at a
 * thousandth of the display rate (decodePace 0.001: 1,000 s per token), so a
 * paced wait that a halt does not wake still outlasts every deadline here.
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { DeviceFrameSchema, ErrorCode, type CloudFrame } from "../../proto/index.js";
import type { DeviceStream } from "../../transports/index.js";
import { CloudFixture } from "../harness/aftermath.js";
import { eachBinding } from "../harness/cases.js";
import { record } from "../harness/evidence.js";
import { FrameLog } from "../harness/inbox.js";
import { openSession, PROMPT, TRANSPORTS, type Binding } from "../harness/normal-device.js";
import { MAX_TARGET_TPOT_US } from "../limits.js";

const SLOWEST = 2 ** 32 - 1;
/** 1,000 s per token: the slowest pace allowed, sent at a thousandth of it. */
const PINNING = { decodePace: 0.001 };

const fixture = new CloudFixture({ config: PINNING });
const short = new CloudFixture({ config: { ...PINNING, limits: { maxRequestDurationMs: 1500 } } });
afterAll(async () => {
  await fixture.stop();
  await short.stop();
});

const ask = (s: DeviceStream, requestId: number, extra: Record<string, unknown> = {}) =>
  s.send(
    create(DeviceFrameSchema, {
      body: {
        case: "prefillRequest",
        value: {
          requestId,
          prompt: { case: "text", value: PROMPT },
          cloudTokenBudget: 8,
          targetTpotUs: MAX_TARGET_TPOT_US,
          ...extra,
        },
      },
    }),
  );

/** Four requests paced at 1,000 s per token, each past its first token: every sequence is pinned. */
async function pinAll(
  b: Binding,
  cloud: Parameters<typeof openSession>[0],
): Promise<{ s: DeviceStream; log: FrameLog }> {
  const s = await openSession(cloud, b);
  const log = new FrameLog(s);
  for (let id = 1; id <= 4; id++) await ask(s, id);
  for (let id = 1; id <= 4; id++) expect(await log.wait(id, "firstToken", 10_000)).toBeDefined();
  return { s, log };
}

describe("item 2: a pacing hint cannot pin sequences", () => {
  eachBinding(TRANSPORTS, "ws/proto", "Cancel frees four requests paced at 1,000 s per token", async (b) => {
    const { cloud } = await fixture.get();
    const { s, log } = await pinAll(b, cloud);
    const t0 = performance.now();
    for (let id = 1; id <= 4; id++)
      await s.send(
        create(DeviceFrameSchema, { body: { case: "cancel", value: { requestId: id, code: ErrorCode.CANCELLED } } }),
      );
    const ends = await Promise.all([1, 2, 3, 4].map((id) => log.wait(id, "end", 5_000)));
    const endMs = performance.now() - t0;
    s.abort();
    const after = await fixture.check(b);
    record({
      case: `2 pacing cancel ${b.name}`,
      ended: ends.filter(Boolean).length,
      endMs,
      held: after.held,
      live: after.live,
    });
    expect(ends.every(Boolean)).toBe(true);
    expect(after.healthy).toBe(true);
  });

  eachBinding(TRANSPORTS, undefined, "a disconnect frees them", async (b) => {
    const { cloud } = await fixture.get();
    const { s } = await pinAll(b, cloud);
    s.abort();
    const after = await fixture.check(b, { releaseMs: 10_000 });
    record({ case: `2 pacing disconnect ${b.name}`, held: after.held, releaseMs: after.releaseMs, live: after.live });
    expect(after.held).toMatchObject({ sequences: 0, queued: 0 });
    expect(after.healthy).toBe(true);
  });

  it("SIGTERM ends them and the cloud exits within its drain time (1 s here)", async () => {
    const { cloud } = await fixture.get();
    const { s } = await pinAll(TRANSPORTS[0]!, cloud);
    cloud.signal("SIGTERM");
    const timer = setTimeout(() => cloud.signal("SIGKILL"), 60_000);
    const exit = await cloud.exited;
    clearTimeout(timer);
    s.abort();
    fixture.discard();
    record({ case: "2 pacing SIGTERM", exitMs: exit.ms, code: exit.code, signal: exit.signal });
    expect(exit.code).toBe(0);
    expect(exit.ms).toBeLessThan(1_000 + 5_000);
  });

  eachBinding(
    TRANSPORTS,
    undefined,
    "max_request_duration_ms (1.5 s here) ends a request asleep between tokens",
    async (b) => {
      const { cloud } = await short.get();
      const s = await openSession(cloud, b);
      const log = new FrameLog(s);
      const t0 = performance.now();
      await ask(s, 1);
      const err = await log.wait(1, "error", 1_500 + 5_000);
      const ms = performance.now() - t0;
      s.abort();
      const after = await short.check(b);
      const code = err?.body.case === "error" ? ErrorCode[err.body.value.code] : undefined;
      record({ case: `2 duration timer ${b.name}`, error: code, ms, held: after.held, live: after.live });
      expect(code).toBe("TIMEOUT");
      expect(after.healthy).toBe(true);
    },
  );

  eachBinding(TRANSPORTS, undefined, "a pace slower than 1 s per token is refused at once (PDD-REQ-009)", async (b) => {
    const { cloud } = await fixture.get();
    const s = await openSession(cloud, b);
    const log = new FrameLog(s);
    const t0 = performance.now();
    await ask(s, 1, { targetTpotUs: SLOWEST });
    await ask(s, 2, { targetTpotUs: MAX_TARGET_TPOT_US + 1 });
    const ends = await Promise.all([1, 2].map((id) => log.wait(id, "end", 5_000)));
    const ms = performance.now() - t0;
    s.abort();
    const after = await fixture.check(b);
    const codes = [1, 2].map((id) => {
      const e = log.of(id, "error");
      return e?.body.case === "error" ? ErrorCode[e.body.value.code] : undefined;
    });
    const tokens = log.frames.filter((f: CloudFrame) => f.body.case === "firstToken" || f.body.case === "tokenBatch");
    record({ case: `2 tpot refused ${b.name}`, codes, tokens: tokens.length, ms, held: after.held });
    expect(ends.every(Boolean)).toBe(true);
    expect(codes).toEqual(["INVALID_ARGUMENT", "INVALID_ARGUMENT"]);
    expect(tokens).toHaveLength(0);
    expect(after.healthy).toBe(true);
  });
});
