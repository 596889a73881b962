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
import type { DeviceCaseEnv } from "./case.js";
import {
  accept,
  chunksOf,
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
import { finishedAnswer } from "./device-kv-cases.js";
import { decoyImage, expectedAnswer, textOf, withoutCutChar } from "./oracle.js";

/** The stall bound of PDD-KV-020, and the slack a loaded machine gets on top of it. */
const STALL_MS = 10_000;
const STALL_SLACK_MS = 5_000;

/** Greets a device that asks for KV, at 1.1 when it offers it, and accepts its first request with KV granted. */
async function kvRequest(p: Probe): Promise<{ s: Served; kvAsk: Record<string, unknown>; at11: boolean }> {
  const hello = await greet(p, { model: "device", kv: true });
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

/**
 * An intact, loadable image whose header names other tokens than the
 * prompt's: the lying image of oracle.ts (the prompt's own image with its KV
 * values wrecked, so importing it shows in the answer) with a filler between
 * its first and last token. A device that checks the header's tokens
 * (PDD-KV-013) refuses it and answers its own prompt; one that does not
 * imports it, checksums and all.
 */
async function otherContextCase(p: Probe, env: DeviceCaseEnv): Promise<void> {
  const oracle = env.oracle;
  if (!oracle) throw new NotOffered("needs the suite's own copy of the device's model (--model FILE)");
  const hello = await greet(p, { model: "device", tokenizer: "device", kv: true });
  needsKv(hello);
  const dm = field<Record<string, Uint8Array> | null>(hello, "hello.deviceModel");
  if (!dm?.modelFingerprint || !Buffer.from(dm.modelFingerprint).equals(Buffer.from(oracle.fingerprints.model)))
    throw new NotOffered("the device does not announce the model given with --model");
  const s = await nextRequest(p, hello);
  const kvAsk = field<Record<string, unknown> | null>(s.request, "prefillRequest.kv");
  const maxTokens = field<number>(s.request, "prefillRequest.maxTokens");
  if (!kvAsk || !(maxTokens >= 2)) throw new NotOffered("the device asked no KV, or leaves no token of its own");
  const prompt = oracle.tokenize(field<string>(s.request, "prefillRequest.text"));
  accept(p, s, { budget: 1, promptTokens: prompt.length, kv: { granted: true } });
  const [t0] = await oracle.continuation(prompt, 1);
  const filler = oracle.tokenizeContinuation(" zebra")[0];
  if (t0 === undefined || filler === undefined || prompt.length < 3) throw new NotOffered("no usable prompt");
  const built = await decoyImage(oracle, prompt);
  if (!built) throw new NotOffered("the prompt is too short for a lying image");
  const image = Buffer.from(built.image);
  for (let i = 1; i < prompt.length - 1; i++) image.writeUInt32LE(filler, 12 + 4 * i); // Token[i] (§7.2)
  const want = await expectedAnswer(oracle, prompt, [t0], maxTokens);
  const afterOther = await oracle.continuationAfterImage(image, prompt[prompt.length - 1]!, [t0], maxTokens - 1);
  const otherAnswer = afterOther ? textOf(oracle, [t0, ...afterOther]) : want;
  if (otherAnswer === want) throw new NotOffered("with this model the lying image gives the same answer");
  if (BigInt(image.length) > BigInt(String(kvAsk.initialCreditBytes ?? 0)))
    throw new NotOffered(`the image (${image.length} bytes) is over the device's initial credit`);
  const chunk = Math.min(Number(kvAsk.maxChunkBytes ?? 0) || 1 << 20, 64 << 10);
  sendKv(p, s, chunksOf(s.id, image, { tokenCount: prompt.length, chunk }));
  p.send({ firstToken: { requestId: s.id, token: { id: t0, piece: oracle.piece(t0) }, queueUs: 0, prefillUs: 1000 } });
  s.sent = 1;
  end(p, s, "END_REASON_BUDGET_EXHAUSTED", 1, { kvBytesSent: String(image.length) });
  await drainChecking(p, s, () => undefined);
  const out = await finishedAnswer(env, "PDD-KV-013");
  if (!out) return;
  expectThat(
    withoutCutChar(out.text) === withoutCutChar(want),
    `the continuation of its own prompt ${JSON.stringify(want.slice(0, 80))}: an image of other tokens refused (PDD-KV-013)`,
    `${JSON.stringify(out.text.slice(0, 80))}${out.text === otherAnswer ? " — the lying image's answer: it imported it" : ""}`,
  );
}

export const DEVICE_1_1_KV_CASES: Case[] = [
  {
    id: "device.kv.other-tokens",
    title: "refuses an intact KV image whose header names other tokens than its prompt's, and answers its own prompt",
    role: "device",
    requirements: ["PDD-KV-013"],
    answer: true,
    run: otherContextCase,
  },
  {
    id: "device.kv.huge",
    title: "refuses a KV image announcing more bytes than its model makes, with KvAbort{RESOURCE_EXHAUSTED}",
    role: "device",
    requirements: ["PDD-KV-016"],
    // On WebTransport the chunk's own stream can overtake Accepted: the device holds it (PDD-WT-007).
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
