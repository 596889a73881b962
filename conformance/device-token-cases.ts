/**
 * A device that uses the cloud's token IDs as its own (same tokenizer,
 * PDD-MSG-009) checks each against its vocabulary before it evaluates it
 * (PDD-MSG-013). The suite plays a cloud with the device's own tokenizer,
 * sends valid tokens, then a TokenBatch whose second ID is the device's
 * vocab_size: the device must not use that frame at all, not even its first
 * token (PDD-SM-001), keep the earlier frames' tokens, send Cancel
 * PROTOCOL_VIOLATION and finish locally. A device that passes the ID to its
 * engine dies; one that takes over past the bad frame and finishes is not
 * judged (it may use the pieces, not the IDs, as PDD-MSG-009 allows).
 */
import type { Case, DeviceCaseEnv } from "./case.js";
import {
  accept,
  drain,
  end,
  expectAnswer,
  expectThat,
  greet,
  nextRequest,
  observe,
  type Served,
  tokenAt,
} from "./device-cases.js";
import { CheckFailure, field, isClose, NotOffered, type Probe, requestIdOf } from "./probe.js";

/** The most valid tokens the earlier frames carry: token 6 is the first of the suite's markers (device-cases.ts). */
const MOST_VALID = 6;

/**
 * Sends `valid` tokens with IDs the device has, then the bad frame of two tokens at `valid`: a marker
 * whose ID is valid, then one whose ID is the device's vocab_size. The bad frame is otherwise valid (in the
 * budget, dense), so only its ID makes it a violation.
 */
function sendValidThenBad(p: Probe, s: Served, vocab: number, valid: number): void {
  // IDs from the middle of the vocabulary, away from control tokens; the pieces are the suite's, so the
  // display shows a marker where the rules forbid cloud tokens (device-cases.ts PIECES).
  const at = (i: number) => ({ id: Math.floor(vocab / 2) + i, piece: tokenAt(i).piece });
  p.send({ firstToken: { requestId: s.id, token: at(0), queueUs: 0, prefillUs: 1000 } });
  if (valid > 1)
    p.send({
      tokenBatch: { requestId: s.id, startIndex: 1, tokens: Array.from({ length: valid - 1 }, (_, i) => at(i + 1)) },
    });
  const marker = { ...at(MOST_VALID), id: Math.floor(vocab / 2) + valid };
  const bad = { ...at(MOST_VALID + 1), id: vocab };
  p.send({ tokenBatch: { requestId: s.id, startIndex: valid, tokens: [marker, bad] } });
  s.sent = valid + 2;
}

/** Waits for the device's Cancel of the request; what it did instead, as text, when none comes. */
async function awaitCancel(p: Probe, s: Served): Promise<{ code?: string; instead?: string }> {
  // One wait in all, not per frame: a device that keeps sending progress without cancelling still ends here.
  const deadline = performance.now() + p.waitMs;
  for (;;) {
    const left = deadline - performance.now();
    const r = left > 0 ? await p.recv(left) : undefined;
    if (r === undefined) return { instead: `no Cancel within ${p.waitMs} ms` };
    if (isClose(r)) return { instead: `the connection closed (${r.closed.code} ${r.closed.reason})` };
    observe(s, r);
    if (r.body === "cancel" && requestIdOf(r) === s.id) return { code: field<string>(r, "cancel.code") };
    if (s.takeover !== undefined) return { instead: `Takeover at ${s.takeover}` };
  }
}

/**
 * Ends the request and waits for the device's run: what it did instead of cancelling, with its exit when it
 * died; `lived` when its run ended with exit 0 (undefined when the run is not observable, --listen).
 */
async function withExit(
  env: DeviceCaseEnv,
  p: Probe,
  s: Served,
  valid: number,
  instead: string,
): Promise<{ said: string; lived: boolean | undefined }> {
  end(p, s, "END_REASON_ERROR", valid);
  await drain(p, s);
  const out = await env.outcome().catch(() => undefined);
  if (out === undefined) return { said: instead, lived: undefined };
  return out.exitCode !== 0
    ? { said: `${instead}; the device exited ${out.exitCode}: ${out.stderr.slice(-200)}`, lived: false }
    : { said: instead, lived: true };
}

async function vocabCase(p: Probe, env: DeviceCaseEnv): Promise<void> {
  const hello = await greet(p, { tokenizer: "device" });
  const dm = field<Record<string, unknown> | null>(hello, "hello.deviceModel");
  const vocab = Number(dm?.vocabSize ?? 0);
  if (!(dm?.tokenizerFingerprint instanceof Uint8Array) || dm.tokenizerFingerprint.length !== 32 || !(vocab > 0))
    throw new NotOffered("the device announces no tokenizer fingerprint and vocab_size, so it cannot use cloud IDs");
  const s = await nextRequest(p, hello);
  const budget = accept(p, s, { budget: 32 });
  const valid = Math.min(MOST_VALID, budget - 2);
  if (valid < 1)
    throw new NotOffered(`the device's budget of ${budget} leaves no room for a valid token and the bad frame`);
  sendValidThenBad(p, s, vocab, valid);
  const { code, instead } = await awaitCancel(p, s);
  if (instead !== undefined) {
    if (s.takeover !== undefined && s.takeover <= valid)
      throw new NotOffered(`the device took over at ${s.takeover}, before it used the bad frame`);
    const { said, lived } = await withExit(env, p, s, valid, instead);
    // PDD-MSG-009 allows a device with the cloud's tokenizer to use the pieces, not the IDs: such a device
    // rightly takes over past the bad frame. The wire cannot tell it from one whose engine took the ID
    // without failing, so a device that took over and finished is not judged; one that died is.
    if (s.takeover !== undefined && lived !== false)
      throw new NotOffered(
        `the device took over at ${s.takeover}, past the bad frame, and ${lived ? "exited 0" : "its run is not observable"}: it may use the pieces rather than the IDs (PDD-MSG-009 allows it), which the wire cannot tell from an engine that took ID ${vocab}`,
      );
    throw new CheckFailure(
      `Cancel PROTOCOL_VIOLATION for request ${s.id}: token ${valid + 1}'s ID ${vocab} is outside its vocabulary (PDD-MSG-013)`,
      said,
    );
  }
  expectThat(code === "ERROR_CODE_PROTOCOL_VIOLATION", "Cancel with PROTOCOL_VIOLATION (PDD-MSG-013)", String(code));
  end(p, s, "END_REASON_CANCELLED", valid);
  await drain(p, s);
  expectThat(
    s.takeover === undefined || s.takeover <= valid,
    `no Takeover past the ${valid} tokens of the earlier frames (PDD-SM-001)`,
    `Takeover at ${s.takeover}`,
  );
  // The bad frame's first token is a marker: a device that showed it used the frame.
  await expectAnswer(env, s, valid, "PDD-MSG-013");
}

export const DEVICE_TOKEN_CASES: Case[] = [
  {
    id: "device.token.vocab",
    title: "cancels with PROTOCOL_VIOLATION on a cloud token ID outside its vocabulary, uses none of that frame",
    role: "device",
    requirements: ["PDD-MSG-013", "PDD-SM-001"],
    answer: true,
    run: vocabCase,
  },
];
