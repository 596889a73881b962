/**
 * What the cloud cases share: the frames they send, the sessions they open
 * and the checks they make of what comes back. Each check fails with
 * "expected … / observed …" and names its rule. The case files import these
 * through cloud-cases.ts as well.
 */
import { closeCarries } from "./error-mapping.js";
import type { CaseEnv } from "./case.js";
import { CheckFailure, field, isClose, NotOffered, requestIdOf, type Probe } from "./probe.js";
import { fittedPrompt } from "./prompt-room.js";
import { render, type Codec, type Frame } from "./wire.js";

export const prefill = (id: number, extra: Record<string, unknown> = {}): Frame => ({
  prefillRequest: { requestId: id, text: "Tell me about the fox.", cloudTokenBudget: 4, ...extra },
});

export function expectThat(ok: boolean, expected: string, observed: string): void {
  if (!ok) throw new CheckFailure(expected, observed);
}

/** Checks a served request's frames against §6 (ordering, dense indices, budget, End). */
export function checkServed(frames: Frame[], id: number, asked: number): { tokens: number; granted: number } {
  expectThat(frames[0]?.body === "accepted", "Accepted as the request's first frame (PDD-ORD-001)", render(frames[0]!));
  const granted = field<number>(frames[0]!, "accepted.cloudTokenBudget");
  expectThat(granted >= 1 && granted <= asked, `a granted budget in [1, ${asked}] (PDD-REQ-005)`, String(granted));
  let sent = 0;
  for (const f of frames.slice(1, -1)) {
    expectThat(requestIdOf(f) === id, `request_id ${id} on every frame of the request (PDD-MSG-002)`, render(f));
    if (f.body === "firstToken") {
      expectThat(
        sent === 0,
        "FirstToken once, before every TokenBatch (PDD-ORD-002)",
        `FirstToken after ${sent} tokens`,
      );
      expectThat(
        field(f, "firstToken.token") !== null && field(f, "firstToken.token") !== undefined,
        "FirstToken carrying token 0",
        render(f),
      );
      sent = 1;
    } else if (f.body === "tokenBatch") {
      expectThat(sent > 0, "FirstToken before every TokenBatch (PDD-ORD-002)", "a TokenBatch first");
      const start = field<number>(f, "tokenBatch.startIndex");
      const n = field<unknown[]>(f, "tokenBatch.tokens").length;
      expectThat(start === sent, `start_index ${sent}, dense (PDD-IDX-001)`, String(start));
      expectThat(n > 0, "a non-empty TokenBatch (PDD-IDX-002)", "0 tokens");
      sent += n;
    }
  }
  expectThat(sent <= granted, `at most the granted ${granted} tokens (PDD-IDX-003)`, `${sent} tokens`);
  const end = frames[frames.length - 1]!;
  expectThat(end.body === "end", "End as the last frame (PDD-ORD-003)", render(end));
  const reason = field<string>(end, "end.reason");
  if (reason === "END_REASON_BUDGET_EXHAUSTED" || reason === "END_REASON_MAX_TOKENS" || reason === "END_REASON_EOS") {
    expectThat(
      field<number>(end, "end.tokenCount") === sent,
      `End.token_count = ${sent} tokens sent (PDD-IDX-004)`,
      String(field(end, "end.tokenCount")),
    );
  }
  if (reason === "END_REASON_BUDGET_EXHAUSTED")
    expectThat(
      sent === granted,
      `the whole granted budget sent before BUDGET_EXHAUSTED (PDD-IDX-004)`,
      `${sent} of ${granted}`,
    );
  const usage = field<Record<string, unknown> | null>(end, "end.usage");
  if (usage) {
    expectThat(
      Number(usage.sentTokens) === sent,
      `usage.sent_tokens = ${sent} (PDD-IDX-006)`,
      String(usage.sentTokens),
    );
    expectThat(
      Number(usage.decodedTokens) >= sent,
      `usage.decoded_tokens >= ${sent} (PDD-IDX-006)`,
      String(usage.decodedTokens),
    );
  }
  return { tokens: sent, granted };
}

/**
 * Expects a request Error with `code` followed by End{ERROR} whose token_count
 * is every token sent (PDD-ORD-004, PDD-MSG-011, PDD-MSG-014); `received`: the
 * tokens of the request the case already read.
 */
export async function expectRequestError(
  p: Probe,
  id: number,
  code: string,
  rule: string,
  received = 0,
): Promise<void> {
  const frames = await p.collect(id);
  const err = frames.find((f) => f.body === "error");
  expectThat(
    err !== undefined,
    `an Error for request ${id} with ${code} (${rule})`,
    frames.map((f) => f.body).join(", "),
  );
  expectThat(field(err!, "error.code") === code, `error code ${code} (${rule})`, String(field(err!, "error.code")));
  const i = frames.indexOf(err!);
  expectThat(
    frames[i + 1]?.body === "end" && field(frames[i + 1]!, "end.reason") === "END_REASON_ERROR",
    "End with reason ERROR right after the request Error (PDD-ORD-004, PDD-MSG-011)",
    frames
      .slice(i + 1)
      .map((f) => render(f))
      .join("; "),
  );
  const sent = received + tokensIn(frames);
  expectThat(
    field(frames[i + 1]!, "end.tokenCount") === sent,
    `End{ERROR}.token_count = the ${sent} tokens sent before the Error, which stand (PDD-MSG-014)`,
    String(field(frames[i + 1]!, "end.tokenCount")),
  );
}

/** The answer tokens among a request's frames (FirstToken and TokenBatch). */
function tokensIn(frames: Frame[]): number {
  let n = 0;
  for (const f of frames) {
    if (f.body === "firstToken") n += 1;
    if (f.body === "tokenBatch") n += field<unknown[]>(f, "tokenBatch.tokens").length;
  }
  return n;
}

export { closeCarries };

/** Expects a connection error: an Error with request_id 0 and `code`, then a close carrying it (§2.6, §13.3). */
export async function expectConnectionError(
  p: Probe,
  code: string,
  codeNumber: number,
  rule: string,
  transport = p.transport,
  waitMs = p.waitMs,
): Promise<void> {
  let sawError = false;
  for (;;) {
    const r = await p.recv(waitMs);
    if (r === undefined) {
      if (sawError) return; // the Error came; the close may take longer
      throw new CheckFailure(`connection error ${code} (${rule})`, `nothing within ${waitMs} ms`);
    }
    if (isClose(r)) {
      const c = r.closed.code;
      const ok = transport
        ? closeCarries(transport, c, codeNumber)
        : ["websocket", "grpc", "webtransport"].some((t) => closeCarries(t, c, codeNumber));
      expectThat(ok, `the connection closed with ${code} (${rule}, §13.3)`, `close ${c} ${r.closed.reason}`);
      return;
    }
    const f = r as Frame;
    if (f.body === "error") {
      expectThat(field(f, "error.requestId") === 0, "a connection-scope Error (request_id 0)", render(f));
      expectThat(field(f, "error.code") === code, `error code ${code} (${rule})`, String(field(f, "error.code")));
      sawError = true;
      continue;
    }
    if (f.body === "helloAck") throw new CheckFailure(`no HelloAck; connection error ${code} (${rule})`, render(f));
  }
}

/**
 * Starts request 1 with a large budget and a pacing hint (or the `pace`
 * given), so the cloud is still streaming when the next frame arrives;
 * returns at its FirstToken.
 */
export async function startStreaming(
  p: Probe,
  pace: { cloudTokenBudget?: number; targetTpotUs?: number } = {},
): Promise<void> {
  await p.hello();
  p.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 20000, ...pace }));
  await p.until((f) => f.body === "firstToken", "FirstToken");
}

/** Pings and expects the very next frame to be the Pong: nothing else was said, the connection lives. */
export async function expectOnlyPong(p: Probe, expected: string): Promise<void> {
  p.send({ ping: { nonce: "7" } });
  const f = await p.until(() => true, expected);
  expectThat(f.body === "pong", expected, render(f));
}

export function kvOffered(p: Probe): void {
  if (field(p.ack!, "helloAck.capabilities.kvChunks") !== true)
    throw new NotOffered("the cloud does not offer KV chunks");
}

/** Says Hello, requires KV, and returns the cloud's model: a session that claims it may be granted KV (PDD-KV-001). */
export async function kvModel(p: Probe): Promise<Record<string, unknown>> {
  await p.hello();
  kvOffered(p);
  return field<Record<string, unknown>>(p.ack!, "helloAck.cloudModel");
}

/**
 * Request `id` asking for a KV image (Llama-Seq-State) of a prompt of up to
 * `repeats` sentences that fits the cloud's limits with `budget` tokens
 * (prompt-room.ts), with the chunk size and the initial credit given.
 */
export function kvPrefill(
  q: Probe,
  id: number,
  o: { repeats: number; budget: number; targetTpotUs?: number; maxChunkBytes?: number; credit: number },
): Frame {
  const kv = {
    format: "KV_FORMAT_LLAMA_SEQ_STATE",
    ...(o.maxChunkBytes === undefined ? {} : { maxChunkBytes: o.maxChunkBytes }),
    initialCreditBytes: String(o.credit),
  };
  const pace = o.targetTpotUs === undefined ? {} : { targetTpotUs: o.targetTpotUs };
  return prefill(id, { text: fittedPrompt(q, o), cloudTokenBudget: o.budget, ...pace, kv });
}

/** The codec's name in a Hello's codec list. */
export const codecName = (codec: Codec): string => (codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK");

/** A Hello offering 1.0 over `codec`, with `fields` added or replaced; Probe.hello sends the suite's own. */
export const helloFrame = (codec: Codec, fields: Record<string, unknown> = {}): Frame => ({
  hello: { versions: [{ major: 1, minor: 0 }], codecs: [codecName(codec)], ...fields },
});

/** Requires the HelloAck's refinement capability (the case needs it). */
export function refinementOffered(p: Probe): void {
  if (field(p.ack!, "helloAck.capabilities.refinement") !== true)
    throw new NotOffered("the cloud does not offer refinement");
}

/** Requires the HelloAck's token_ids capability (the case needs it). */
export function tokenIdsOffered(p: Probe): void {
  if (field(p.ack!, "helloAck.capabilities.tokenIds") !== true)
    throw new NotOffered("the cloud does not take token-ID prompts");
}

/**
 * Closes `p`, whose HelloAck named the cloud's model, and opens a session
 * whose Hello (at `versions`, default the suite's) claims that model, as a
 * device with the cloud's own model would.
 */
export async function reopenAsCloudModel(
  p: Probe,
  env: CaseEnv,
  versions?: { major: number; minor: number }[],
): Promise<Probe> {
  const model = field<Record<string, unknown>>(p.ack!, "helloAck.cloudModel");
  p.close();
  const q = await env.open();
  await q.hello({ versions, deviceModel: model });
  return q;
}

/** Says Hello on `p` requiring KV, then reopens as the cloud's model: a session that may be granted KV (PDD-KV-001). */
export async function kvSession(p: Probe, env: CaseEnv): Promise<Probe> {
  await kvModel(p);
  return reopenAsCloudModel(p, env);
}

/** The cloud's context_length and max_prompt_tokens (default context_length − 1) from `p`'s HelloAck. */
export function contextLimits(p: Probe): { context: number; maxPrompt: number } {
  const context = Number(field(p.ack!, "helloAck.cloudModel.contextLength"));
  return { context, maxPrompt: field<number>(p.ack!, "helloAck.limits.maxPromptTokens") || context - 1 };
}

/**
 * Serves a prompt of `maxPrompt` token IDs (token 1, the usual BOS) with a
 * budget of 256, after the §6 checks: the context has room for
 * context_length − maxPrompt tokens.
 */
export async function fillContext(
  q: Probe,
  maxPrompt: number,
): Promise<{ end: Frame; tokens: number; granted: number }> {
  q.send({ prefillRequest: { requestId: 1, tokens: { ids: Array(maxPrompt).fill(1) }, cloudTokenBudget: 256 } });
  const frames = await q.collect(1, 20_000);
  return { end: frames[frames.length - 1]!, ...checkServed(frames, 1, 256) };
}

/** Tries `attempt` with each item, the first on `p`, each next one on a fresh connection (an attempt may end one). */
export async function eachOnFreshConnection<T>(
  p: Probe,
  env: CaseEnv,
  items: T[],
  attempt: (q: Probe, item: T) => Promise<void>,
): Promise<void> {
  let q = p;
  for (const item of items) {
    await attempt(q, item);
    q = await env.open();
  }
}

/** Waits for request `id`'s first frame and requires it to be an Accepted granting KV. */
export async function kvGranted(q: Probe, id: number): Promise<Frame> {
  const accepted = await q.until((f) => requestIdOf(f) === id, "Accepted");
  if (field(accepted, "accepted.kv.granted") !== true) throw new NotOffered("KV was not granted");
  return accepted;
}

/** Every frame of request `id` up to its End, and the End. */
export async function collectToEnd(p: Probe, id: number, waitMs?: number): Promise<{ frames: Frame[]; end: Frame }> {
  const frames = await p.collect(id, waitMs);
  return { frames, end: frames[frames.length - 1]! };
}

/** Expects End with `reason` (and, when given, token_count `count`). */
export function expectEnd(end: Frame, reason: string, expected: string, count?: number): void {
  expectThat(
    field(end, "end.reason") === reason && (count === undefined || field(end, "end.tokenCount") === count),
    expected,
    render(end),
  );
}

/** Sends the PrefillRequest `request` and expects it to fail: a request Error with `code`, then End{ERROR}. */
export async function expectRequestFails(p: Probe, request: Frame, code: string, rule: string): Promise<void> {
  p.send(request);
  await expectRequestError(p, field<number>(request, "prefillRequest.requestId"), code, rule);
}

/** Token IDs of each of `ids`' answers, read concurrently up to every End. */
export async function answerIds(p: Probe, ...ids: number[]): Promise<number[][]> {
  const frames = new Map<number, Frame[]>(ids.map((id) => [id, []]));
  let open = ids.length;
  while (open > 0) {
    const f = await p.until(
      (x) => frames.has(requestIdOf(x) ?? -1),
      `frames of requests ${ids.join(", ")} up to their End (PDD-ORD-003)`,
    );
    frames.get(requestIdOf(f)!)!.push(f);
    if (f.body === "end") open--;
  }
  return ids.map((id) => {
    const fs = frames.get(id)!;
    checkServed(fs, id, 1 << 20);
    return fs.flatMap((f) =>
      f.body === "firstToken"
        ? [field<number>(f, "firstToken.token.id")]
        : f.body === "tokenBatch"
          ? field<{ id: number }[]>(f, "tokenBatch.tokens").map((t) => t.id)
          : [],
    );
  });
}

/** Says Hello on `q` and starts request 1 paced to hold a sequence for 51 s (256 tokens, 5 a second); its first frame. */
export async function startHeldRequest(q: Probe): Promise<Frame> {
  await q.hello();
  q.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 200_000 }));
  return q.until((f) => requestIdOf(f) === 1, "Accepted");
}
