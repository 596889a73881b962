/**
 * The device's request state machine rule by rule (spec §4.1, §6, §7): each
 * violation with its exact rule and message, the frame just inside each
 * limit, and what the device may keep. Written against Stryker's survivors
 * (npm run test:mutation, issue 15).
 */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { PrefillRequestSchema } from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode } from "../errors.js";
import { accepted, batch, cloud, device, first, refined, takeover, tok, violationOf } from "../test/request-frames.js";
import { DeviceRequestState } from "./device-request.js";

type Usage = { sentTokens: number };
const error = () =>
  cloud({ case: "error", value: { requestId: 1, code: ErrorCode.UNAVAILABLE, message: "busy", retryable: true } });
const end = (reason: number, tokenCount: number, usage?: Usage) =>
  cloud({ case: "end", value: { requestId: 1, reason, tokenCount, usage } });
const chunk = (offset: bigint, n: number, o: { total?: bigint; sha?: boolean } = {}) =>
  cloud({
    case: "kvChunk",
    value: {
      requestId: 1,
      offset,
      totalBytes: o.total ?? 8n,
      data: new Uint8Array(n),
      imageSha256: o.sha ? new Uint8Array(32) : new Uint8Array(),
    },
  });
const cancel = () => device({ case: "cancel", value: { requestId: 1, code: ErrorCode.CANCELLED } });
const credit = () => device({ case: "kvCredit", value: { requestId: 1, bytes: 4n } });
const progress = () => device({ case: "progress", value: { requestId: 1 } });

interface Ask {
  kv?: bigint;
  refine?: boolean;
  maxTokens?: number;
}
const request = (ask: Ask = {}) =>
  new DeviceRequestState(
    create(PrefillRequestSchema, {
      requestId: 1,
      cloudTokenBudget: 8,
      maxTokens: ask.maxTokens ?? 0,
      kv: ask.kv === undefined ? undefined : { initialCreditBytes: ask.kv },
      refine: ask.refine ? { targetRatio: 0.5 } : undefined,
    }),
  );

/** A request accepted with `budget` that has received `n` tokens. */
function received(n: number, budget = 8, ask: Ask = {}): DeviceRequestState {
  const s = request(ask);
  s.receive(accepted(budget));
  if (n > 0) s.receive(first());
  if (n > 1) s.receive(batch(1, n - 1));
  return s;
}

/** A request that asked for and was granted KV with `creditBytes`. */
function kvRequest(creditBytes = 8n): DeviceRequestState {
  const s = request({ kv: creditBytes });
  s.receive(accepted(8, { kv: true }));
  return s;
}

describe("the device's request state machine: what it sends", () => {
  it("starts requested, with the KV credit it offered", () => {
    expect(request({ kv: 12n })).toMatchObject({ phase: "requested", received: 0, kvCredit: 12n, cancelled: false });
    expect(request()).toMatchObject({ kvCredit: 0n, keepLimit: Number.POSITIVE_INFINITY, takeoverIndex: undefined });
  });

  it("a Takeover: after Accepted, at most the tokens received (exactly those is fine), once", () => {
    expect(violationOf(() => request().beforeSend(takeover(0)))).toBe("PDD-TAKEOVER-008: Takeover before Accepted");
    expect(violationOf(() => received(2).beforeSend(takeover(3)))).toBe(
      "PDD-TAKEOVER-001: Takeover at 3 but only 2 tokens received",
    );
    const s = received(2);
    s.beforeSend(takeover(2));
    expect(s).toMatchObject({ phase: "stopping", takeoverIndex: 2, keepLimit: 2 });
    expect(violationOf(() => s.beforeSend(takeover(1)))).toBe("PDD-TAKEOVER-002: a second Takeover");
  });

  it("a Cancel stops the request; after it, or after End, only KvCredit and DeviceProgress may go", () => {
    const s = received(1);
    s.beforeSend(cancel());
    expect(s).toMatchObject({ phase: "stopping", cancelled: true });
    s.beforeSend(credit());
    s.beforeSend(progress());
    expect(violationOf(() => s.beforeSend(takeover(1)))).toBe(
      "PDD-CANCEL-002: no takeover after the request is cancelled or ended",
    );
    expect(violationOf(() => s.beforeSend(cancel()))).toBe(
      "PDD-CANCEL-002: no cancel after the request is cancelled or ended",
    );
    const ended = received(1);
    ended.receive(end(1, 1));
    ended.beforeSend(progress());
    expect(violationOf(() => ended.beforeSend(takeover(1)))).toBe(
      "PDD-CANCEL-002: no takeover after the request is cancelled or ended",
    );
  });

  it("a Takeover or Cancel after a request Error leaves the request failed", () => {
    const s = received(2);
    s.receive(error());
    s.beforeSend(takeover(1));
    expect(s.phase).toBe("failed");
    const t = received(2);
    t.receive(error());
    t.beforeSend(cancel());
    expect(t.phase).toBe("failed");
  });

  it("KvCredit adds to the credit the device has granted", () => {
    const s = kvRequest(4n);
    s.beforeSend(credit());
    expect(s.kvCredit).toBe(8n);
    s.beforeSend(progress());
    expect(s).toMatchObject({ kvCredit: 8n, phase: "accepted" });
  });
});

describe("the device's request state machine: Accepted and Error", () => {
  it("Accepted first, with a budget of at least 1, and kv and refine present iff asked", () => {
    const s = request();
    expect(s.receive(accepted(3))).toMatchObject({ kind: "accepted", accepted: { cloudTokenBudget: 3 } });
    expect(s).toMatchObject({ phase: "accepted", grantedBudget: 3, kvGranted: false });
    expect(violationOf(() => s.receive(accepted()))).toBe(
      "PDD-ORD-001: Accepted is not the first frame of the request",
    );
    expect(violationOf(() => request().receive(accepted(0)))).toBe("PDD-REQ-005: granted budget is 0");
    request().receive(accepted(1));
    expect(violationOf(() => request().receive(accepted(8, { kv: false })))).toBe(
      "PDD-MSG-008: Accepted.kv present iff KV was asked",
    );
    expect(violationOf(() => request({ kv: 8n }).receive(accepted()))).toBe(
      "PDD-MSG-008: Accepted.kv present iff KV was asked",
    );
    expect(violationOf(() => request().receive(accepted(8, { refine: false })))).toBe(
      "PDD-MSG-008: Accepted.refine present iff refinement was asked",
    );
    expect(violationOf(() => request({ refine: true }).receive(accepted()))).toBe(
      "PDD-MSG-008: Accepted.refine present iff refinement was asked",
    );
    expect(kvRequest().kvGranted).toBe(true);
    const refused = request({ kv: 8n });
    refused.receive(accepted(8, { kv: false }));
    expect(refused.kvGranted).toBe(false);
  });

  it("a request Error carries the cloud's code, message and retryable; a second one is a violation", () => {
    const s = request();
    const ev = s.receive(error());
    expect(ev.kind).toBe("error");
    expect(ev.kind === "error" && ev.error).toMatchObject({
      code: ErrorCode.UNAVAILABLE,
      rawMessage: "busy",
      requestId: 1,
      retryable: true,
      local: "ERR_REMOTE",
    });
    expect(s.phase).toBe("failed");
    expect(violationOf(() => s.receive(error()))).toBe("PDD-ORD-004: a second Error");
  });
});

describe("the device's request state machine: tokens", () => {
  it("FirstToken after Accepted, once, not after an Error", () => {
    expect(violationOf(() => request().receive(first()))).toBe("PDD-ORD-001: FirstToken before Accepted");
    const s = received(0);
    expect(s.receive(first())).toMatchObject({ kind: "tokens", startIndex: 0, tokens: [tok(0)], discarded: 0 });
    expect(s).toMatchObject({ phase: "streaming", received: 1 });
    expect(violationOf(() => s.receive(first()))).toBe("PDD-ORD-002: a second FirstToken");
    const failed = received(0);
    failed.receive(error());
    expect(violationOf(() => failed.receive(first()))).toBe("PDD-ORD-004: FirstToken after Error");
  });

  it("TokenBatch after Accepted and FirstToken, not empty, not after an Error, at the next index", () => {
    expect(violationOf(() => request().receive(batch(1, 1)))).toBe("PDD-ORD-001: TokenBatch before Accepted");
    expect(violationOf(() => received(0).receive(batch(0, 1)))).toBe("PDD-ORD-002: TokenBatch before FirstToken");
    expect(violationOf(() => received(2).receive(batch(2, 0)))).toBe("PDD-IDX-002: empty TokenBatch");
    expect(violationOf(() => received(2).receive(batch(3, 1)))).toBe("PDD-IDX-001: TokenBatch starts at 3, expected 2");
    const failed = received(2);
    failed.receive(error());
    expect(violationOf(() => failed.receive(batch(2, 1)))).toBe("PDD-ORD-004: TokenBatch after Error");
    const s = received(2);
    expect(s.receive(batch(2, 2))).toMatchObject({ kind: "tokens", startIndex: 2, discarded: 0 });
    expect(s.received).toBe(4);
  });

  it("up to the granted budget and max_tokens, not one token more", () => {
    const s = received(3, 4);
    s.receive(batch(3, 1));
    expect(violationOf(() => s.receive(batch(4, 1)))).toBe("PDD-IDX-003: token 4 exceeds the granted budget of 4");
    const capped = received(2, 8, { maxTokens: 3 });
    capped.receive(batch(2, 1));
    expect(violationOf(() => capped.receive(batch(3, 1)))).toBe("PDD-IDX-003: token 3 is beyond max_tokens 3");
  });

  it("keeps the tokens before k of a batch that straddles the takeover, and none after", () => {
    const s = received(2);
    s.beforeSend(takeover(2));
    expect(s.receive(batch(2, 3))).toMatchObject({ kind: "tokens", tokens: [], discarded: 3 });
    expect(s.phase).toBe("stopping");
    const t = received(3);
    t.beforeSend(takeover(1));
    expect(t.receive(batch(3, 2))).toMatchObject({ tokens: [], discarded: 2 });
    const u = received(1, 8);
    u.beforeSend(takeover(1));
    expect(u.receive(batch(1, 1))).toMatchObject({ tokens: [], discarded: 1 });
    // Not taken over: everything is kept.
    expect(received(1).receive(batch(1, 3))).toMatchObject({ discarded: 0 });
  });

  it("after a Cancel, everything but End is ignored", () => {
    const s = received(1);
    s.beforeSend(cancel());
    expect(s.receive(batch(1, 1))).toEqual({ kind: "ignored" });
    expect(s.receive(error())).toEqual({ kind: "ignored" });
    expect(s.received).toBe(1);
  });
});

describe("the device's request state machine: KV chunks", () => {
  it("after Accepted, granted, in order, not empty", () => {
    expect(violationOf(() => request({ kv: 8n }).receive(chunk(0n, 4)))).toBe("PDD-ORD-001: KvChunk before Accepted");
    const refused = request({ kv: 8n });
    refused.receive(accepted(8, { kv: false }));
    expect(violationOf(() => refused.receive(chunk(0n, 4)))).toBe("PDD-KV-001: KvChunk without a KV grant");
    expect(violationOf(() => kvRequest().receive(chunk(2n, 2)))).toBe("PDD-KV-004: chunk at offset 2, expected 0");
    expect(violationOf(() => kvRequest().receive(chunk(0n, 0)))).toBe("PDD-KV-005: empty KV chunk");
  });

  it("one total_bytes, never run past it, within the credit (exactly all of it is fine)", () => {
    const s = kvRequest(8n);
    expect(s.receive(chunk(0n, 4))).toMatchObject({ kind: "kv", last: false });
    expect(s).toMatchObject({ kvReceived: 4n, kvTotal: 8n });
    expect(violationOf(() => s.receive(chunk(4n, 2, { total: 9n })))).toBe(
      "PDD-KV-004: total_bytes changed between chunks",
    );
    expect(violationOf(() => s.receive(chunk(4n, 5)))).toBe("PDD-KV-004: chunk runs past total_bytes");
    expect(s.receive(chunk(4n, 4, { sha: true }))).toMatchObject({ kind: "kv", last: true });
    expect(s.kvReceived).toBe(8n);
    const tight = kvRequest(4n);
    tight.receive(chunk(0n, 4));
    expect(violationOf(() => tight.receive(chunk(4n, 1)))).toBe("PDD-KV-008: 5 KV bytes received, only 4 granted");
  });

  it("image_sha256 on the last chunk and only there", () => {
    expect(violationOf(() => kvRequest().receive(chunk(0n, 4, { sha: true })))).toBe(
      "PDD-KV-006: image_sha256 must be set on the last chunk only",
    );
    expect(violationOf(() => kvRequest().receive(chunk(0n, 8)))).toBe(
      "PDD-KV-006: image_sha256 must be set on the last chunk only",
    );
  });
});

describe("the device's request state machine: RefinedPrompt and End", () => {
  it("RefinedPrompt after Accepted, only when asked, once", () => {
    expect(violationOf(() => request({ refine: true }).receive(refined()))).toBe(
      "PDD-ORD-001: RefinedPrompt before Accepted",
    );
    expect(violationOf(() => received(0).receive(refined()))).toBe(
      "PDD-ORD-005: RefinedPrompt not granted or sent twice",
    );
    const s = request({ refine: true });
    s.receive(accepted(8, { refine: true }));
    expect(s.receive(refined())).toMatchObject({ kind: "refined", refined: { text: "x" } });
    expect(violationOf(() => s.receive(refined()))).toBe("PDD-ORD-005: RefinedPrompt not granted or sent twice");
  });

  it("End after Accepted or an Error; after an Error only with reason ERROR; then the request is closed", () => {
    expect(violationOf(() => request().receive(end(1, 0)))).toBe("PDD-ORD-001: End before Accepted or Error");
    const failed = request();
    failed.receive(error());
    expect(violationOf(() => failed.receive(end(1, 0)))).toBe("PDD-ORD-004: End after Error must have reason ERROR");
    expect(failed.receive(end(6, 0))).toMatchObject({ kind: "end", keep: 0 });
    expect(failed.phase).toBe("closed");
    expect(failed.receive(first())).toEqual({ kind: "ignored" });
  });

  it("End's counts: sent_tokens never below the tokens received; token_count the tokens, or k when taken over", () => {
    expect(violationOf(() => received(3).receive(end(1, 3, { sentTokens: 2 })))).toBe(
      "PDD-IDX-006: usage.sent_tokens 2 < 3 received",
    );
    expect(received(3).receive(end(1, 3, { sentTokens: 3 }))).toMatchObject({ kind: "end", keep: 3 });
    for (const reason of [1, 3, 4])
      expect(violationOf(() => received(3).receive(end(reason, 2)))).toBe(
        "PDD-IDX-004: End token_count 2 but 3 tokens were received",
      );
    // CANCELLED and ERROR: the count is not checked against the tokens received.
    expect(received(3).receive(end(5, 1))).toMatchObject({ kind: "end", keep: 3 });
    expect(received(3).receive(end(6, 0))).toMatchObject({ kind: "end", keep: 3 });
    expect(violationOf(() => received(3).receive(end(2, 3)))).toBe(
      "PDD-TAKEOVER-005: End{TAKEN_OVER} token_count 3, takeover was undefined",
    );
    const s = received(3);
    s.beforeSend(takeover(2));
    expect(violationOf(() => s.receive(end(2, 3)))).toBe(
      "PDD-TAKEOVER-005: End{TAKEN_OVER} token_count 3, takeover was 2",
    );
    expect(s.receive(end(2, 2, { sentTokens: 5 }))).toMatchObject({ kind: "end", keep: 2 });
  });

  it("End after the device's Cancel closes the request whatever it counts, keeping what came before", () => {
    const s = received(2);
    s.beforeSend(cancel());
    expect(s.receive(end(1, 7, { sentTokens: 1 }))).toMatchObject({ kind: "end", keep: 2 });
    expect(s.phase).toBe("closed");
    const t = received(3);
    t.beforeSend(takeover(2));
    t.beforeSend(cancel());
    expect(t.receive(end(5, 3))).toMatchObject({ kind: "end", keep: 2 });
  });

  it("frames with no request meaning are ignored", () => {
    expect(received(1).receive(cloud({ case: "pong", value: { nonce: 1n } }))).toEqual({ kind: "ignored" });
  });
});
