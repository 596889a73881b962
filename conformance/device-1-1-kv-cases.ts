/**
 * Device cases for the spec 1.1 bounds on a KV transfer (issue 13.4, issue 14
 * item 12): the device refuses an image too large to hold (PDD-KV-016) and
 * stops waiting for one that stalls (PDD-KV-020), telling the cloud with
 * KvAbort. KvAbort is a 1.1 message (PDD-VER-007): the suite answers 1.1
 * when the device offers it, and then expects it.
 */
import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import type { Case } from "./case.js";
import {
  accept,
  end,
  expectAnswer,
  expectThat,
  greet,
  needsKv,
  nextRequest,
  sendKv,
  sendTokens,
  type Served,
} from "./device-cases.js";
import { field, isClose, NotOffered, type Probe } from "./probe.js";
import { render, type Frame } from "./wire.js";

/** The stall bound of PDD-KV-020, and the slack a loaded machine gets on top of it. */
const STALL_MS = 10_000;
const STALL_SLACK_MS = 5_000;

/** Greets a device that asks for KV, at 1.1 when it offers it, and accepts its first request with KV granted. */
async function kvRequest(p: Probe): Promise<{ s: Served; kvAsk: Record<string, unknown>; at11: boolean }> {
  const hello = await greet(p, { model: "device", kv: true, minor: 1 });
  needsKv(hello);
  const offered = field<{ major: number; minor: number }[]>(hello, "hello.versions");
  const at11 = offered.some((v) => v.major === 1 && v.minor >= 1);
  const s = await nextRequest(p, hello);
  const kvAsk = field<Record<string, unknown> | null>(s.request, "prefillRequest.kv");
  if (!kvAsk) throw new NotOffered("the device did not ask for KV for this request");
  accept(p, s, { budget: 1, kv: { granted: true } });
  return { s, kvAsk, at11 };
}

/** Fails on KvCredit or Cancel for the refused image (PDD-KV-016, PDD-KV-007). */
function noCreditNorCancel(f: Frame): void {
  expectThat(
    f.body !== "kvCredit" && f.body !== "cancel",
    "no credit for an image too big to take, and no Cancel for it (PDD-KV-016, PDD-KV-007)",
    render(f),
  );
}

/** Like drain (device-cases.ts), checking each frame of request `s` with `check`. */
async function drainChecking(p: Probe, s: Served, check: (f: Frame) => void): Promise<void> {
  for (;;) {
    const r = await p.recv(300);
    if (r === undefined || isClose(r)) return;
    const f = r as Frame;
    if (field(f, `${f.body}.requestId`) === s.id) check(f);
    if (f.body === "takeover") s.takeover = field<number>(f, "takeover.index");
  }
}

/** The device's next frame for request `s` other than Progress (informative, PDD-MSG-007), within `ms`. */
async function nextOf(p: Probe, s: Served, what: string, ms: number): Promise<Frame> {
  return p.until((f) => f.body !== "progress" && field(f, `${f.body}.requestId`) === s.id, what, ms);
}

export const DEVICE_1_1_KV_CASES: Case[] = [
  {
    id: "device.kv.huge",
    title: "refuses a KV image announcing more bytes than its model makes, with KvAbort{RESOURCE_EXHAUSTED}",
    role: "device",
    requirements: ["PDD-KV-016"],
    answer: true,
    async run(p, env) {
      const { s, kvAsk, at11 } = await kvRequest(p);
      const credit = Number(kvAsk.initialCreditBytes ?? 0);
      const size = Math.min(4096, Number(kvAsk.maxChunkBytes ?? 0) || 4096, credit);
      if (size < 1) throw new NotOffered("the device grants no initial KV credit");
      const data = randomBytes(size);
      const huge = {
        kvChunk: {
          requestId: s.id,
          format: "KV_FORMAT_LLAMA_SEQ_STATE",
          tokenCount: 16,
          offset: "0",
          totalBytes: String(2 ** 40), // 1 TiB: no device holds that for 16 positions
          data,
          crc32: crc32(data),
        },
      };
      sendKv(p, s, [huge]);
      // Under 1.1 the refusal is a KvAbort; under 1.0 only the credit shows whether the chunk was kept.
      for (let f: Frame | undefined; at11 && f?.body !== "kvAbort"; ) {
        f = await nextOf(p, s, "KvAbort{RESOURCE_EXHAUSTED} for a 1 TiB image (PDD-KV-016)", 5000);
        noCreditNorCancel(f);
        if (f.body === "kvAbort")
          expectThat(
            field(f, "kvAbort.code") === "ERROR_CODE_RESOURCE_EXHAUSTED",
            "KvAbort with RESOURCE_EXHAUSTED (PDD-KV-016)",
            render(f),
          );
      }
      // The tokens go on: the device answers from its own prefill. A frame processes in order, so credit
      // for the chunk would come before the device's answer to End.
      sendTokens(p, s, 1);
      end(p, s, "END_REASON_BUDGET_EXHAUSTED", 1, { kvBytesSent: String(size) });
      await drainChecking(p, s, noCreditNorCancel);
      await expectAnswer(env, s, 1, "PDD-KV-016");
    },
  },
  {
    id: "device.kv.stalled",
    title: "gives up a KV image no chunk of which comes for 10 s, and answers from its own prefill",
    role: "device",
    requirements: ["PDD-KV-020"],
    answer: true,
    async run(p, env) {
      const { s } = await kvRequest(p);
      sendTokens(p, s, 1);
      const since = performance.now();
      // Neither a chunk nor End: a device that waits for the image without bound never moves.
      const f = await nextOf(
        p,
        s,
        `a move within ${(STALL_MS + STALL_SLACK_MS) / 1000} s of a stalled transfer: KvAbort, Takeover or Cancel (PDD-KV-020)`,
        STALL_MS + STALL_SLACK_MS,
      );
      expectThat(
        ["kvAbort", "takeover", "cancel"].includes(f.body ?? ""),
        "the device gives the image up: KvAbort, Takeover or Cancel (PDD-KV-020)",
        `${render(f)} after ${Math.round(performance.now() - since)} ms`,
      );
      if (f.body === "kvAbort")
        expectThat(
          field(f, "kvAbort.code") === "ERROR_CODE_CANCELLED",
          "KvAbort with CANCELLED when it gives up before End (PDD-KV-020)",
          render(f),
        );
      if (f.body === "takeover") s.takeover = field<number>(f, "takeover.index");
      end(p, s, s.takeover !== undefined ? "END_REASON_TAKEN_OVER" : "END_REASON_BUDGET_EXHAUSTED", s.takeover ?? 1);
      await drainChecking(p, s, () => undefined);
      await expectAnswer(env, s, 1, "PDD-KV-020");
    },
  },
];
