/**
 * `pdd fuzz`'s liveness check of a cloud (issue 13): not "a Ping is answered"
 * but "a normal device gets a full, correct answer within its normal time".
 * Before any fuzzing the fuzzer asks the cloud one greedy question on a fresh
 * connection (the baseline); after every so many attacks, and at the end, it
 * asks again and wants the same token IDs and text, End's token_count equal to
 * the tokens it received, within max(5 s, 10 × the baseline's time). When the
 * cloud exports metrics, the attacks must also have left 0 sequences active
 * and 0 requests queued.
 */
import type { RawSession } from "./raw-client.js";
import { decodeCloud, encodeDevice, type Codec, type Frame } from "./wire.js";

/** Why a fuzz run failed: on stderr, in the JSON report, and (for `baseline`) exit status 3. */
export type FuzzCause =
  | "no-pong" // a case's Ping got neither a Pong nor a close within the wait
  | "undecodable" // the cloud sent bytes that are no frame
  | "no-answer" // the normal device got no full answer (closed, refused, silent until the deadline)
  | "wrong-answer" // an answer other than the baseline's, or End's token_count not the tokens received
  | "slow-answer" // the right answer, after the deadline
  | "bad-id-used" // (device) a token ID outside the vocabulary was not refused as PDD-MSG-013 says
  | "clean-cancelled" // (device) the clean run's valid frames were cancelled
  | "held" // the metrics still count sequences or queued requests after the attacks
  | "baseline"; // the cloud could not answer the liveness question before any fuzzing

/** A case or check the cloud did not survive: its cause, and what was sent (for the corpus). */
export class FuzzFailure extends Error {
  constructor(
    message: string,
    readonly input: { hex: string[]; note: string },
    readonly why: FuzzCause = "no-pong",
  ) {
    super(message);
  }
}

/** The normal device's question: greedy (no sampling), 8 cloud tokens, then End. */
const QUESTION = { text: "The quick brown fox jumps over the lazy dog. Then", cloudTokenBudget: 8, maxTokens: 8 };

export interface Answer {
  ids: number[];
  text: string;
  ms: number;
}

export interface LivenessOptions {
  codec: Codec;
  open(): Promise<RawSession>;
  /** A Prometheus endpoint of the cloud (pdd_sequences_active, pdd_queue_depth). */
  metrics?: string;
  /** The least deadline of a check, ms (default 5000); tests of failing clouds lower it. */
  floorMs?: number;
}

const fail = (cause: FuzzCause, message: string, note: string) => new FuzzFailure(message, { hex: [], note }, cause);

const tokensOf = (f: Frame): { id: number; piece?: Uint8Array }[] => {
  if (f.body === "firstToken") return [(f.firstToken as { token: { id: number; piece?: Uint8Array } }).token];
  if (f.body === "tokenBatch") return (f.tokenBatch as { tokens: { id: number; piece?: Uint8Array }[] }).tokens ?? [];
  return [];
};

/** Asks the liveness question on a fresh connection; throws `no-answer` / `wrong-answer` by `deadlineMs`. */
export async function ask(o: LivenessOptions, deadlineMs: number, note: string): Promise<Answer> {
  const t0 = performance.now();
  const left = () => Math.max(1, deadlineMs - (performance.now() - t0));
  let s: RawSession;
  try {
    s = await o.open();
  } catch (e) {
    throw fail("no-answer", `the normal device could not connect: ${(e as Error).message}`, note);
  }
  const ids: number[] = [];
  const pieces: Uint8Array[] = [];
  try {
    const codec = o.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK";
    s.send(encodeDevice({ hello: { versions: [{ major: 1, minor: 0 }], codecs: [codec] } }, o.codec));
    s.send(encodeDevice({ prefillRequest: { requestId: 1, ...QUESTION } }, o.codec));
    for (;;) {
      const v = await s.next(left());
      if (v === undefined) throw fail("no-answer", `no End within ${deadlineMs} ms (${ids.length} tokens)`, note);
      if (!(v instanceof Uint8Array))
        throw fail("no-answer", `the connection closed (code ${v.code}) after ${ids.length} tokens`, note);
      const f = decodeCloud(v, o.codec);
      if (f.body === "error") throw fail("no-answer", `the cloud answered an Error: ${JSON.stringify(f.error)}`, note);
      for (const t of tokensOf(f)) {
        ids.push(Number(t.id));
        pieces.push(t.piece ?? new Uint8Array());
      }
      if (f.body !== "end") continue;
      const count = Number((f.end as { tokenCount?: number }).tokenCount ?? 0);
      if (count !== ids.length || ids.length === 0)
        throw fail("wrong-answer", `End.token_count ${count} after ${ids.length} tokens received`, note);
      return { ids, text: Buffer.concat(pieces).toString("utf8"), ms: performance.now() - t0 };
    }
  } finally {
    s.close();
  }
}

/** The baseline: the cloud's answer before any attack. */
export async function baseline(o: LivenessOptions, waitMs: number): Promise<Answer> {
  try {
    return await ask(o, waitMs, "baseline, before any fuzzing");
  } catch (e) {
    throw new FuzzFailure(
      `the cloud gave no full answer before any fuzzing: ${(e as Error).message}`,
      { hex: [], note: "baseline" },
      "baseline",
    );
  }
}

/** After attacks: nothing held (when metrics are given), then the baseline's answer within its deadline. */
export async function checkLive(o: LivenessOptions, base: Answer, note: string): Promise<void> {
  const deadline = Math.max(o.floorMs ?? 5000, 10 * base.ms);
  if (o.metrics) await nothingHeld(o.metrics, deadline, note);
  const a = await ask(o, deadline, note);
  if (a.ids.join() !== base.ids.join() || a.text !== base.text)
    throw fail(
      "wrong-answer",
      `answered ${JSON.stringify(a.text)} [${a.ids.join(",")}], before fuzzing ${JSON.stringify(base.text)} [${base.ids.join(",")}]`,
      note,
    );
  if (a.ms > deadline)
    throw fail("slow-answer", `the answer took ${Math.round(a.ms)} ms, more than ${deadline} ms`, note);
}

/** Reads one unlabelled gauge; a metric the cloud does not export is a failure, never a 0. */
function gauge(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`the metrics have no ${name}`);
  return Number(m[1]);
}

/** The cloud frees what the attacks held within `deadlineMs`: 0 sequences active (admitted), 0 busy in the engine, 0 queued. */
async function nothingHeld(url: string, deadlineMs: number, note: string): Promise<void> {
  const t0 = performance.now();
  let seen = "";
  for (;;) {
    try {
      const text = await (await fetch(url)).text();
      const active = gauge(text, "pdd_sequences_active");
      const busy = gauge(text, "pdd_engine_sequences_busy");
      const queued = gauge(text, "pdd_queue_depth");
      if (active === 0 && busy === 0 && queued === 0) return;
      seen = `${active} sequences active, ${busy} busy in the engine, ${queued} queued`;
    } catch (e) {
      throw fail("held", `the metrics at ${url} cannot be read: ${(e as Error).message}`, note);
    }
    if (performance.now() - t0 > deadlineMs) throw fail("held", `${seen} ${deadlineMs} ms after the attacks`, note);
    // A poll of a remote endpoint: it has no event to wait on.
    await new Promise((r) => setTimeout(r, 20));
  }
}
