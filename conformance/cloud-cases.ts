/** Cases for a cloud under test: the suite plays the device. */
import { closeCarries } from "./error-mapping.js";
import { fittedPrompt } from "./prompt-room.js";
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { Packr } from "msgpackr";
import type { Case } from "./case.js";
import { CheckFailure, field, isClose, NotOffered, requestIdOf, type Probe } from "./probe.js";
import { render, type Frame } from "./wire.js";

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
 * Starts request 1 with a large budget and a pacing hint, so the cloud is
 * still streaming when the next frame arrives; returns at its FirstToken.
 */
export async function startStreaming(p: Probe): Promise<void> {
  await p.hello();
  p.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 20000 }));
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

export const CLOUD_CASES: Case[] = [
  {
    id: "cloud.hello",
    title: "answers Hello with HelloAck at the negotiated version and the connection's codec",
    role: "cloud",
    requirements: [
      "PDD-CONN-001",
      "PDD-CONN-003",
      "PDD-CONN-008",
      "PDD-CONN-010",
      "PDD-VER-001",
      "PDD-VER-002",
      "PDD-GRPC-001",
      "PDD-CODEC-002",
    ],
    async run(p) {
      const ack = (await p.hello({
        versions: [
          { major: 1, minor: 99 },
          { major: 7, minor: 0 },
        ],
      }))!;
      expectThat(
        field(ack, "helloAck.version.major") === 1,
        "version 1.x chosen (PDD-VER-002)",
        JSON.stringify(field(ack, "helloAck.version")),
      );
      expectThat(
        field<number>(ack, "helloAck.version.minor") <= 99,
        "minor = min(device, cloud) (PDD-VER-002)",
        JSON.stringify(field(ack, "helloAck.version")),
      );
      expectThat(
        field(ack, "helloAck.codec") === (p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"),
        "the connection's codec in HelloAck (PDD-CONN-008)",
        String(field(ack, "helloAck.codec")),
      );
      const fp = field<Uint8Array>(ack, "helloAck.cloudModel.modelFingerprint");
      expectThat(fp?.length === 32, "a 32-byte model fingerprint (PDD-CONN-010)", String(fp?.length));
    },
  },
  {
    id: "cloud.version.unknown-major",
    title: "refuses an unknown major version with UNSUPPORTED_VERSION and its supported versions",
    role: "cloud",
    requirements: ["PDD-VER-003", "PDD-CONN-016", "PDD-ERR-001"],
    async run(p) {
      p.send({
        hello: { versions: [{ major: 2, minor: 0 }], codecs: [p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"] },
      });
      const f = await p.until(() => true, "an Error UNSUPPORTED_VERSION, no HelloAck (PDD-VER-003)");
      expectThat(
        f.body === "error" && field(f, "error.code") === "ERROR_CODE_UNSUPPORTED_VERSION",
        "Error UNSUPPORTED_VERSION (PDD-VER-003)",
        render(f),
      );
      const sv = field<{ major: number }[]>(f, "error.supportedVersions");
      expectThat(
        sv.some((v) => v.major === 1),
        "supported_versions listing 1.x (PDD-VER-003)",
        JSON.stringify(sv),
      );
      const after = await p.recv(2000);
      expectThat(
        after === undefined || isClose(after),
        "the connection closed, no further frame (PDD-CONN-016)",
        after ? render(after as Frame) : "",
      );
    },
  },
  {
    id: "cloud.hello.first-frame",
    title: "treats a connection whose first frame is not Hello as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-CONN-002"],
    async run(p) {
      p.send(prefill(1));
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-CONN-002");
    },
  },
  {
    id: "cloud.hello.second",
    title: "treats a second Hello as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-CONN-004"],
    async run(p) {
      await p.hello();
      await p.hello({ await: false });
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-CONN-004");
    },
  },
  {
    id: "cloud.hello.codec",
    title: "refuses a Hello whose codecs lack the connection's codec",
    role: "cloud",
    requirements: ["PDD-CONN-007"],
    async run(p) {
      await p.hello({ await: false, codecs: [p.codec === "proto" ? "CODEC_MSGPACK" : "CODEC_PROTO"] });
      await expectConnectionError(p, "ERROR_CODE_UNSUPPORTED_CODEC", 4, "PDD-CONN-007");
    },
  },
  {
    id: "cloud.request.pipelined",
    title: "serves a request sent right behind the Hello, before HelloAck",
    role: "cloud",
    requirements: ["PDD-CONN-005"],
    async run(p) {
      await p.hello({ await: false });
      p.send(prefill(1));
      const ack = await p.until(() => true, "HelloAck first");
      expectThat(ack.body === "helloAck", "HelloAck first (PDD-CONN-003)", render(ack));
      checkServed(await p.collect(1), 1, 4);
    },
  },
  {
    id: "cloud.request.served",
    title: "serves a request: Accepted, the first token, dense batches, End last with usage",
    role: "cloud",
    requirements: [
      "PDD-ORD-001",
      "PDD-ORD-002",
      "PDD-ORD-003",
      "PDD-IDX-001",
      "PDD-IDX-002",
      "PDD-IDX-003",
      "PDD-IDX-004",
      "PDD-IDX-006",
      "PDD-MSG-001",
      "PDD-MSG-002",
      "PDD-MSG-008",
      "PDD-REQ-001",
      "PDD-REQ-005",
      "PDD-VER-007",
    ],
    async run(p) {
      await p.hello();
      p.send(prefill(3, { cloudTokenBudget: 12 }));
      const frames = await p.collect(3);
      const accepted = frames[0]!;
      expectThat(
        field(accepted, "accepted.kv") === null && field(accepted, "accepted.refine") === null,
        "no kv/refine grant when not asked (PDD-MSG-008)",
        render(accepted),
      );
      checkServed(frames, 3, 12);
      await p.quietFor(3, 300);
    },
  },
  {
    id: "cloud.request.max-tokens",
    title: "never sends a token at or past max_tokens",
    role: "cloud",
    requirements: ["PDD-IDX-003"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 50, maxTokens: 3 }));
      const { tokens } = checkServed(await p.collect(1), 1, 50);
      expectThat(tokens <= 3, "at most max_tokens = 3 tokens (PDD-IDX-003)", `${tokens} tokens`);
    },
  },
  {
    id: "cloud.request.empty-prompt",
    title: "refuses an empty prompt with INVALID_ARGUMENT, then End",
    role: "cloud",
    requirements: ["PDD-REQ-003", "PDD-ORD-004", "PDD-MSG-011", "PDD-ERR-001", "PDD-ORD-001"],
    async run(p) {
      await p.hello();
      p.send({ prefillRequest: { requestId: 1, text: "", cloudTokenBudget: 4 } });
      await expectRequestError(p, 1, "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-003");
    },
  },
  {
    id: "cloud.request.zero-budget",
    title: "refuses a cloud_token_budget of 0 with INVALID_ARGUMENT",
    role: "cloud",
    requirements: ["PDD-REQ-004"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 0 }));
      await expectRequestError(p, 1, "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-004");
    },
  },
  {
    id: "cloud.takeover.race",
    title: "on Takeover(k) stops at once and ends with TAKEN_OVER and token_count k, tokens in flight or not",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-004", "PDD-TAKEOVER-005"],
    async run(p) {
      await startStreaming(p);
      // Take over at k = 2 once 4 tokens came (more are in flight): token_count must be k, not the tokens sent.
      await p.until(
        (f) =>
          f.body === "tokenBatch" &&
          field<number>(f, "tokenBatch.startIndex") + field<unknown[]>(f, "tokenBatch.tokens").length >= 4,
        "4 tokens before the Takeover",
      );
      p.send({ takeover: { requestId: 1, index: 2 } });
      const rest = await p.collect(1);
      const end = rest[rest.length - 1]!;
      expectThat(
        field(end, "end.reason") === "END_REASON_TAKEN_OVER",
        "End TAKEN_OVER (PDD-TAKEOVER-005)",
        render(end),
      );
      expectThat(
        field(end, "end.tokenCount") === 2,
        "End.token_count = k = 2, not the 4 or more tokens sent (PDD-TAKEOVER-005)",
        String(field(end, "end.tokenCount")),
      );
      const inFlight = rest
        .filter((f) => f.body === "tokenBatch")
        .reduce((a, f) => a + field<unknown[]>(f, "tokenBatch.tokens").length, 0);
      expectThat(
        inFlight < 250,
        "the cloud stopped after the takeover, not at the budget (PDD-TAKEOVER-004)",
        `${inFlight} more tokens`,
      );
      await p.quietFor(1, 300);
    },
  },
  {
    id: "cloud.takeover.beyond-sent",
    title: "treats a Takeover beyond the tokens sent as PROTOCOL_VIOLATION for the request",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-006"],
    async run(p) {
      await startStreaming(p);
      p.send({ takeover: { requestId: 1, index: 100000 } });
      await expectRequestError(p, 1, "ERROR_CODE_PROTOCOL_VIOLATION", "PDD-TAKEOVER-006", 1); // after FirstToken
    },
  },
  {
    id: "cloud.takeover.zero",
    title: "accepts Takeover(0) after Accepted and ends with TAKEN_OVER, token_count 0",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-008"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 20000 }));
      await p.until((f) => f.body === "accepted", "Accepted");
      p.send({ takeover: { requestId: 1, index: 0 } });
      const rest = await p.collect(1);
      const end = rest[rest.length - 1]!;
      expectThat(
        field(end, "end.reason") === "END_REASON_TAKEN_OVER" && field(end, "end.tokenCount") === 0,
        "End TAKEN_OVER with token_count 0 (PDD-TAKEOVER-008)",
        render(end),
      );
    },
  },
  {
    id: "cloud.takeover.crossed-end",
    title: "ignores a Takeover and a Cancel that crossed its End",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-007", "PDD-SM-003"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 2 }));
      await p.collect(1);
      p.send({ takeover: { requestId: 1, index: 1 } });
      p.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED" } });
      await expectOnlyPong(p, "no error for frames that crossed End (PDD-SM-003)");
    },
  },
  {
    id: "cloud.cancel",
    title: "on Cancel stops and ends with CANCELLED",
    role: "cloud",
    requirements: ["PDD-CANCEL-001"],
    async run(p) {
      await startStreaming(p);
      p.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED", reason: "user stopped" } });
      const rest = await p.collect(1);
      const end = rest[rest.length - 1]!;
      expectThat(field(end, "end.reason") === "END_REASON_CANCELLED", "End CANCELLED (PDD-CANCEL-001)", render(end));
    },
  },
  {
    id: "cloud.request-id.duplicate",
    title: "refuses a request ID not above the earlier ones, without touching the live request",
    role: "cloud",
    requirements: ["PDD-SM-005", "PDD-CONN-013", "PDD-CONN-012"],
    async run(p) {
      await p.hello();
      p.send(prefill(5, { cloudTokenBudget: 6 }));
      p.send(prefill(5, { cloudTokenBudget: 6 }));
      const frames: Frame[] = [];
      let dup: Frame | undefined;
      for (;;) {
        const f = await p.until(() => true, "the first request's frames and a DUPLICATE_REQUEST_ID error");
        if (f.body === "error" && field(f, "error.requestId") === 0) dup = f;
        else if (requestIdOf(f) === 5) frames.push(f);
        if (frames.length > 0 && frames[frames.length - 1]!.body === "end") break;
      }
      if (!dup) dup = await p.until((f) => f.body === "error", "a DUPLICATE_REQUEST_ID error", 1000);
      expectThat(
        field(dup, "error.code") === "ERROR_CODE_DUPLICATE_REQUEST_ID",
        "error DUPLICATE_REQUEST_ID with request_id 0 (PDD-SM-005)",
        render(dup),
      );
      checkServed(frames, 5, 6);
      await expectOnlyPong(p, "the connection still open (PDD-SM-005)");
    },
  },
  {
    id: "cloud.request-id.never-opened",
    title: "treats a Takeover for a request never opened as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-SM-004"],
    async run(p) {
      await p.hello();
      p.send({ takeover: { requestId: 42, index: 0 } });
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-SM-004");
    },
  },
  {
    id: "cloud.ping",
    title: "answers Ping with a Pong that echoes nonce and sent_at_us",
    role: "cloud",
    requirements: ["PDD-CONN-019"],
    async run(p) {
      await p.hello();
      p.send({ ping: { nonce: "18446744073709551615", sentAtUs: "123456789" } });
      const f = await p.until((x) => x.body === "pong", "a Pong");
      expectThat(
        field(f, "pong.nonce") === "18446744073709551615" && field(f, "pong.pingSentAtUs") === "123456789",
        "nonce and sent_at_us echoed (PDD-CONN-019)",
        render(f),
      );
    },
  },
  {
    id: "cloud.malformed",
    title: "treats an undecodable frame as a MALFORMED_FRAME connection error",
    role: "cloud",
    requirements: ["PDD-CODEC-001", "PDD-CONN-016", "PDD-SEC-005", "PDD-WS-004", "PDD-GRPC-003", "PDD-WT-004"],
    async run(p) {
      await p.hello();
      p.sendBytes(
        p.codec === "proto" ? Uint8Array.of(0x12, 0xff, 0xff, 0xff) : Uint8Array.of(0xdc, 0xff),
        "a truncated frame",
      );
      await expectConnectionError(p, "ERROR_CODE_MALFORMED_FRAME", 1, "PDD-CODEC-001");
    },
  },
  {
    id: "cloud.oversize",
    title: "refuses a frame over its maximum frame size with FRAME_TOO_LARGE",
    role: "cloud",
    requirements: ["PDD-LIMIT-001", "PDD-WS-003", "PDD-GRPC-004"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxFrameBytes") || 4 << 20;
      p.send(prefill(1, { text: "x".repeat(max + 1024) }));
      await expectConnectionError(p, "ERROR_CODE_FRAME_TOO_LARGE", 2, "PDD-LIMIT-001");
    },
  },
  {
    id: "cloud.unknown-fields",
    title: "ignores fields it does not know",
    role: "cloud",
    requirements: ["PDD-VER-005"],
    async run(p) {
      await p.hello();
      if (p.codec === "proto") {
        const { encodeDevice } = await import("./wire.js");
        const known = encodeDevice(prefill(1), "proto");
        // Inside the PrefillRequest (field 2): add field 1000 (varint) to its body.
        const inner = known.subarray(2 + (known[1]! >= 0x80 ? 1 : 0));
        const extra = Uint8Array.of(0xc0, 0x3e, 0x01);
        const body = Uint8Array.from([...inner, ...extra]);
        p.sendBytes(Uint8Array.from([0x12, body.length, ...body]), "a PrefillRequest with unknown field 1000");
      } else {
        p.sendBytes(
          new Packr({ useRecords: false }).pack({
            prefillRequest: {
              requestId: 1,
              text: "Tell me about the fox.",
              cloudTokenBudget: 4,
              fieldFromTheFuture: [1, 2],
            },
          }),
          "a PrefillRequest with an unknown key",
        );
      }
      checkServed(await p.collect(1), 1, 4);
    },
  },
  {
    id: "cloud.unknown-body",
    title: "ignores a frame with no body",
    role: "cloud",
    requirements: ["PDD-VER-006"],
    async run(p) {
      await p.hello();
      p.sendBytes(
        p.codec === "proto"
          ? new Uint8Array(0)
          : new Packr({ useRecords: false }).pack({ messageFromTheFuture: { x: 1 } }),
        "an envelope with no known body",
      );
      await expectOnlyPong(p, "the empty frame ignored, no error (PDD-VER-006)");
    },
  },
  {
    id: "cloud.kv.foreign-model",
    title: "refuses KV for a device with another model fingerprint, and serves the request",
    role: "cloud",
    requirements: ["PDD-KV-001", "PDD-MSG-008"],
    needs: ["kv"],
    async run(p) {
      await p.hello({
        deviceModel: {
          name: "another",
          modelFingerprint: Buffer.alloc(32, 7),
          tokenizerFingerprint: Buffer.alloc(32, 8),
        },
      });
      kvOffered(p);
      p.send(prefill(1, { kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", initialCreditBytes: "1048576" } }));
      const frames = await p.collect(1);
      expectThat(
        field(frames[0]!, "accepted.kv.granted") === false &&
          field(frames[0]!, "accepted.kv.refusal") === "ERROR_CODE_MODEL_MISMATCH",
        "Accepted.kv refused with MODEL_MISMATCH (PDD-KV-001)",
        render(frames[0]!),
      );
      expectThat(!frames.some((f) => f.body === "kvChunk"), "no KvChunk after a refusal", "KV chunks");
      checkServed(frames, 1, 4);
    },
  },
  {
    id: "cloud.kv.stream",
    title: "streams a KV image in order, CRC-32 on every chunk, SHA-256 on the last, within the granted credit",
    role: "cloud",
    requirements: ["PDD-KV-004", "PDD-KV-005", "PDD-KV-006", "PDD-KV-008", "PDD-KV-010", "PDD-KV-012", "PDD-KV-014"],
    needs: ["kv"],
    async run(p, env) {
      const model = await kvModel(p);
      p.close();
      // A session that claims the cloud's own model, so KV may be granted (PDD-KV-001).
      const q = await env.open();
      await q.hello({ deviceModel: model });
      // Not a power of two, and above the 4,096-byte minimum (PDD-KV-014): honoured exactly.
      const CHUNK = 5000;
      const credit = 2 * CHUNK;
      q.send(
        prefill(1, {
          text: fittedPrompt(q, { repeats: 20, budget: 24 }),
          cloudTokenBudget: 24,
          kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: CHUNK, initialCreditBytes: String(credit) },
        }),
      );
      const accepted = await q.until((f) => requestIdOf(f) === 1, "Accepted");
      expectThat(
        accepted.body === "accepted" && field(accepted, "accepted.kv.granted") === true,
        "KV granted for the same model (PDD-KV-001)",
        render(accepted),
      );
      const promptTokens = field<number>(accepted, "accepted.promptTokens");
      const kv: KvProgress = { received: 0, total: -1, credit, sha: undefined, parts: [] };
      let end: Frame | undefined;
      // On WebTransport, End may come before the last chunks (PDD-KV-011): read on to the bytes End counts.
      const owed = (e: Frame) =>
        q.transport === "webtransport" ? Number(field(e, "end.usage.kvBytesSent")) - kv.received : 0;
      while (!end || owed(end) > 0) {
        const f = await q.until((x) => requestIdOf(x) === 1, "KV chunks and End", 15_000);
        if (f.body === "end") end = f;
        if (f.body !== "kvChunk") continue;
        const size = checkKvChunk(f.kvChunk as Record<string, unknown>, kv, CHUNK, promptTokens);
        // Return the credit as we consume, as a device should (PDD-KV-009).
        kv.credit += size;
        q.send({ kvCredit: { requestId: 1, bytes: String(size) } });
      }
      expectThat(kv.total > 0, "a KV image announced by its total_bytes (PDD-KV-004)", String(kv.total));
      // A cloud may abandon a transfer (§4.2: "finished or abandoned"), for one
      // an image too big to send within its grace; End then says what was sent.
      if (kv.received === kv.total)
        expectThat(
          kv.sha !== undefined && sha256(Buffer.concat(kv.parts)).equals(Buffer.from(kv.sha)),
          "the image's SHA-256 on the last chunk (PDD-KV-006)",
          "a different digest",
        );
      expectThat(
        Number(field(end, "end.usage.kvBytesSent")) === kv.received,
        `usage.kv_bytes_sent = ${kv.received} (PDD-KV-010)`,
        String(field(end, "end.usage.kvBytesSent")),
      );
      q.close();
    },
  },
  {
    id: "cloud.refine",
    title: "sends a refined prompt once, before tokens end, with ascending spans and consistent counts",
    role: "cloud",
    requirements: ["PDD-REF-001", "PDD-REF-002", "PDD-ORD-005"],
    needs: ["refinement"],
    async run(p) {
      await p.hello();
      if (field(p.ack!, "helloAck.capabilities.refinement") !== true)
        throw new NotOffered("the cloud does not offer refinement");
      p.send(
        prefill(1, {
          text: "The quick brown fox jumps over the lazy dog and the owls smile at every visitor.",
          refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.5 },
        }),
      );
      const frames = await p.collect(1);
      const refined = frames.filter((f) => f.body === "refinedPrompt");
      expectThat(field(frames[0]!, "accepted.refine.granted") === true, "refinement granted", render(frames[0]!));
      expectThat(refined.length === 1, "exactly one RefinedPrompt (PDD-ORD-005)", `${refined.length}`);
      const r = refined[0]!;
      const kept = field<{ start: number; end: number }[]>(r, "refinedPrompt.kept");
      const original = field<number>(r, "refinedPrompt.originalTokens");
      let sum = 0;
      let last = -1;
      for (const s of kept) {
        expectThat(
          s.start > last && s.end > s.start && s.end <= original,
          "ascending, disjoint, non-adjacent, non-empty spans within the prompt (PDD-REF-002)",
          JSON.stringify(kept),
        );
        last = s.end;
        sum += s.end - s.start;
      }
      expectThat(
        sum === field<number>(r, "refinedPrompt.keptTokens"),
        "kept_tokens = the sum of the spans (PDD-REF-002)",
        `${sum} vs ${field(r, "refinedPrompt.keptTokens")}`,
      );
      expectThat(
        Math.abs(field<number>(r, "refinedPrompt.ratio") - sum / original) < 1e-6,
        "ratio = kept/original (PDD-REF-002)",
        String(field(r, "refinedPrompt.ratio")),
      );
      checkServed(
        frames.filter((f) => f.body !== "refinedPrompt"),
        1,
        4,
      );
    },
  },
  {
    id: "cloud.request.prompt-too-long",
    title: "refuses a prompt over max_prompt_tokens with PROMPT_TOO_LONG, before any prefill",
    role: "cloud",
    requirements: ["PDD-LIMIT-003", "PDD-CONN-009"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxPromptTokens");
      expectThat(max > 0, "HelloAck.limits.max_prompt_tokens set (PDD-CONN-009)", String(max));
      // Every word is at least one token.
      p.send(prefill(1, { text: Array.from({ length: max + 16 }, (_, i) => `w${i}`).join(" ") }));
      await expectRequestError(p, 1, "ERROR_CODE_PROMPT_TOO_LONG", "PDD-LIMIT-003");
    },
  },
  {
    id: "cloud.request.token-ids-foreign",
    title: "refuses a token-ID prompt from a device with another tokenizer with TOKENIZER_MISMATCH",
    role: "cloud",
    requirements: ["PDD-REQ-002"],
    async run(p) {
      await p.hello({
        deviceModel: {
          name: "another",
          modelFingerprint: Buffer.alloc(32, 1),
          tokenizerFingerprint: Buffer.alloc(32, 2),
        },
      });
      p.send({ prefillRequest: { requestId: 1, tokens: { ids: [1, 2, 3] }, cloudTokenBudget: 4 } });
      await expectRequestError(p, 1, "ERROR_CODE_TOKENIZER_MISMATCH", "PDD-REQ-002");
    },
  },
  {
    id: "cloud.request.concurrency-limit",
    title: "refuses the request over max_concurrent_requests alone, retryable, and serves the others",
    role: "cloud",
    requirements: ["PDD-LIMIT-004", "PDD-LIMIT-005", "PDD-ERR-002"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxConcurrentRequests") || 8;
      for (let id = 1; id <= max + 1; id++) p.send(prefill(id, { cloudTokenBudget: 256, targetTpotUs: 50000 }));
      let refused: Frame | undefined;
      let accepted = 0;
      while (!refused || accepted < max) {
        const f = await p.until(
          (x) => x.body === "accepted" || x.body === "error",
          `${max} Accepted and one RESOURCE_EXHAUSTED`,
        );
        if (f.body === "accepted") accepted++;
        else refused = f;
      }
      expectThat(
        field(refused, "error.code") === "ERROR_CODE_RESOURCE_EXHAUSTED",
        "RESOURCE_EXHAUSTED for the request over the limit (PDD-LIMIT-004)",
        render(refused),
      );
      expectThat(
        field(refused, "error.retryable") === true,
        "retryable RESOURCE_EXHAUSTED (PDD-ERR-002)",
        render(refused),
      );
      expectThat(
        field<number>(refused, "error.requestId") === max + 1,
        `the refusal for request ${max + 1} alone (PDD-LIMIT-005)`,
        render(refused),
      );
      for (let id = 1; id <= max; id++) p.send({ cancel: { requestId: id, code: "ERROR_CODE_CANCELLED" } });
    },
  },
  {
    id: "cloud.codec.field-order",
    title: "accepts a protobuf frame whose fields come in another order",
    role: "cloud",
    requirements: ["PDD-CODEC-003"],
    codecs: ["proto"],
    async run(p) {
      await p.hello();
      // PrefillRequest fields in descending number order: budget (6), text (2), request_id (1).
      const text = Buffer.from("Tell me about the fox.");
      const inner = Buffer.from([0x30, 4, 0x12, text.length, ...text, 0x08, 1]);
      p.sendBytes(Uint8Array.from([0x12, inner.length, ...inner]), "a PrefillRequest with fields in reverse order");
      checkServed(await p.collect(1), 1, 4);
    },
  },
  {
    id: "cloud.codec.msgpack-names",
    title: "accepts MessagePack with proto field names and enums as integers",
    role: "cloud",
    requirements: ["PDD-CODEC-007", "PDD-CODEC-008", "PDD-CODEC-004"],
    codecs: ["msgpack"],
    async run(p) {
      const packr = new Packr({ useRecords: false });
      p.sendBytes(
        packr.pack({ hello: { versions: [{ major: 1, minor: 0 }], codecs: [2] } }),
        "a Hello with codecs as integers",
      );
      const ack = await p.until(() => true, "HelloAck");
      expectThat(ack.body === "helloAck", "HelloAck for a Hello with integer enums (PDD-CODEC-007)", render(ack));
      p.sendBytes(
        packr.pack({ prefill_request: { request_id: 1, text: "Tell me about the fox.", cloud_token_budget: 4 } }),
        "a PrefillRequest with proto field names",
      );
      checkServed(await p.collect(1), 1, 4);
    },
  },
];

function sha256(b: Uint8Array): Buffer {
  return createHash("sha256").update(b).digest();
}

/** What a KV transfer has shown so far (cloud.kv.stream). */
interface KvProgress {
  received: number;
  /** total_bytes of the first chunk; -1 before it. */
  total: number;
  /** Credit granted so far, initial plus returned. */
  credit: number;
  sha: Uint8Array | undefined;
  parts: Uint8Array[];
}

/** Checks one KvChunk (PDD-KV-004/005/006/008/012), records it in `kv` and returns its size. */
function checkKvChunk(c: Record<string, unknown>, kv: KvProgress, chunkBytes: number, promptTokens: number): number {
  const data = c.data as Uint8Array;
  expectThat(Number(c.offset) === kv.received, `chunk at offset ${kv.received} (PDD-KV-004)`, String(c.offset));
  expectThat(
    data.length > 0 && data.length <= chunkBytes,
    `a non-empty chunk of at most the ${chunkBytes} bytes asked (PDD-KV-005, PDD-KV-014)`,
    String(data.length),
  );
  expectThat(
    crc32(data) === Number(c.crc32),
    "CRC-32 of the chunk's data (PDD-KV-006)",
    `${c.crc32} vs ${crc32(data)}`,
  );
  expectThat(
    kv.received + data.length <= kv.credit,
    `no more than the ${kv.credit} bytes of credit granted (PDD-KV-008)`,
    String(kv.received + data.length),
  );
  expectThat(
    Number(c.tokenCount) >= promptTokens,
    "token_count covering at least the prompt (PDD-KV-012)",
    `${c.tokenCount} < ${promptTokens}`,
  );
  if (kv.total >= 0)
    expectThat(
      Number(c.totalBytes) === kv.total,
      "the same total_bytes on every chunk (PDD-KV-004)",
      String(c.totalBytes),
    );
  kv.total = Number(c.totalBytes);
  kv.parts.push(data);
  kv.received += data.length;
  const last = kv.received === kv.total;
  const hasSha = (c.imageSha256 as Uint8Array).length > 0;
  expectThat(last === hasSha, "image_sha256 on the last chunk only (PDD-KV-006)", `last=${last} sha=${hasSha}`);
  if (hasSha) kv.sha = c.imageSha256 as Uint8Array;
  return data.length;
}
