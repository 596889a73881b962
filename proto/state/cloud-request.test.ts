/**
 * The cloud's request state machine rule by rule (spec §4.2, §6, §7): each
 * violation with its exact rule and message, the frame just inside each
 * limit, and what each device frame asks of the cloud. Written against
 * Stryker's survivors (npm run test:mutation, issue 15).
 */
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../errors.js";
import { accepted, batch, cloud, device, first, refined, takeover, violationOf } from "../test/request-frames.js";
import { CloudRequestState, type CloudRequestLimits } from "./cloud-request.js";

const error = () => cloud({ case: "error", value: { requestId: 1, code: ErrorCode.INTERNAL } });
const end = (reason: number, tokenCount = 0) => cloud({ case: "end", value: { requestId: 1, reason, tokenCount } });
const chunk = (offset: bigint, n: number) =>
  cloud({ case: "kvChunk", value: { requestId: 1, offset, totalBytes: 64n, data: new Uint8Array(n) } });
const cancel = (code = ErrorCode.CANCELLED) => device({ case: "cancel", value: { requestId: 1, code } });

/** A request accepted with `budget` that has sent `n` tokens. */
function sent(n: number, budget = 8, limits: CloudRequestLimits = {}): CloudRequestState {
  const s = new CloudRequestState(1, limits);
  s.beforeSend(accepted(budget));
  if (n > 0) s.beforeSend(first());
  if (n > 1) s.beforeSend(batch(1, n - 1));
  return s;
}

describe("the cloud's request state machine: what it sends", () => {
  it("starts open, with no budget, no max_tokens and no KV credit unless given", () => {
    const s = new CloudRequestState(7);
    expect(s).toMatchObject({ requestId: 7, phase: "open", sent: 0, budget: 0, maxTokens: 0, kvCredit: 0n });
    expect(s.live).toBe(true);
    expect(new CloudRequestState(1, { maxTokens: 5, kvCredit: 9n })).toMatchObject({ maxTokens: 5, kvCredit: 9n });
  });

  it("Accepted opens the request with its budget and grants, once", () => {
    const s = new CloudRequestState(1);
    s.beforeSend(accepted(5, { kv: true, refine: true }));
    expect(s).toMatchObject({ phase: "accepted", budget: 5, kvGranted: true, refineGranted: true });
    expect(violationOf(() => s.beforeSend(accepted()))).toBe("PDD-ORD-001: Accepted twice or after Error");
    const refused = new CloudRequestState(1);
    refused.beforeSend(accepted(5, { kv: false, refine: false }));
    expect(refused).toMatchObject({ kvGranted: false, refineGranted: false });
  });

  it("an Error fails the request: no Accepted and no tokens after it, only End ERROR", () => {
    const s = new CloudRequestState(1);
    s.beforeSend(error());
    expect(s.phase).toBe("failed");
    expect(violationOf(() => s.beforeSend(accepted()))).toBe("PDD-ORD-001: Accepted twice or after Error");
    const t = sent(2);
    t.beforeSend(error());
    expect(violationOf(() => t.beforeSend(batch(2, 1)))).toBe("PDD-ORD-004: TokenBatch after Error");
    expect(violationOf(() => t.beforeSend(end(1, 2)))).toBe("PDD-ORD-004: End after Error must have reason ERROR");
    t.beforeSend(end(6, 2));
    expect(t.phase).toBe("closed");
    expect(t.live).toBe(false);
  });

  it("FirstToken: after Accepted, once, and not after an Error", () => {
    expect(violationOf(() => new CloudRequestState(1).beforeSend(first()))).toBe(
      "PDD-ORD-001: FirstToken before Accepted",
    );
    const s = sent(1);
    expect(s).toMatchObject({ phase: "streaming", sent: 1 });
    expect(violationOf(() => s.beforeSend(first()))).toBe("PDD-ORD-002: FirstToken twice");
    const failed = sent(0);
    failed.beforeSend(error());
    expect(violationOf(() => failed.beforeSend(first()))).toBe("PDD-ORD-004: FirstToken after Error");
  });

  it("TokenBatch: after FirstToken, not empty, at the next index", () => {
    expect(violationOf(() => sent(0).beforeSend(batch(0, 1)))).toBe("PDD-ORD-002: TokenBatch before FirstToken");
    expect(violationOf(() => sent(2).beforeSend(batch(2, 0)))).toBe("PDD-IDX-002: empty TokenBatch");
    expect(violationOf(() => sent(2).beforeSend(batch(3, 1)))).toBe("PDD-IDX-001: start_index 3, expected 2");
    expect(violationOf(() => sent(2).beforeSend(batch(1, 1)))).toBe("PDD-IDX-001: start_index 1, expected 2");
    const s = sent(2);
    s.beforeSend(batch(2, 3));
    expect(s.sent).toBe(5);
  });

  it("sends up to the budget and max_tokens, not one token more", () => {
    const s = sent(3, 4);
    s.beforeSend(batch(3, 1));
    expect(s.sent).toBe(4);
    expect(violationOf(() => s.beforeSend(batch(4, 1)))).toBe("PDD-IDX-003: token 4 beyond the budget of 4");
    expect(violationOf(() => sent(0, 0).beforeSend(first()))).toBe("PDD-IDX-003: token 0 beyond the budget of 0");
    const capped = sent(2, 8, { maxTokens: 3 });
    capped.beforeSend(batch(2, 1));
    expect(violationOf(() => capped.beforeSend(batch(3, 1)))).toBe("PDD-IDX-003: token beyond max_tokens");
  });

  it("no token and no KV after a Takeover or a Cancel", () => {
    const s = new CloudRequestState(1, { kvCredit: 64n });
    s.beforeSend(accepted(8, { kv: true }));
    s.receive(cancel());
    expect(violationOf(() => s.beforeSend(first()))).toBe("PDD-TAKEOVER-004: FirstToken after Takeover or Cancel");
    expect(violationOf(() => s.beforeSend(chunk(0n, 4)))).toBe("PDD-KV-010: KvChunk after Takeover or Cancel");
    const t = sent(2);
    t.receive(takeover(1));
    expect(violationOf(() => t.beforeSend(batch(2, 1)))).toBe("PDD-TAKEOVER-004: TokenBatch after Takeover or Cancel");
    t.beforeSend(end(2, 1));
    expect(t.phase).toBe("closed");
  });

  it("KV: only granted, within the credit (exactly all of it is fine), in order", () => {
    const none = new CloudRequestState(1, { kvCredit: 64n });
    none.beforeSend(accepted(8, { kv: false }));
    expect(violationOf(() => none.beforeSend(chunk(0n, 4)))).toBe("PDD-KV-001: KvChunk without a grant");
    const s = new CloudRequestState(1, { kvCredit: 6n });
    s.beforeSend(accepted(8, { kv: true }));
    s.beforeSend(chunk(0n, 4));
    expect(s).toMatchObject({ kvSent: 4n, kvAvailable: 2n });
    expect(violationOf(() => s.beforeSend(chunk(4n, 3)))).toBe("PDD-KV-008: chunk of 3 bytes with 2 credit left");
    expect(violationOf(() => s.beforeSend(chunk(3n, 2)))).toBe("PDD-KV-004: chunks out of order");
    s.beforeSend(chunk(4n, 2));
    expect(s).toMatchObject({ kvSent: 6n, kvAvailable: 0n });
  });

  it("neither KV nor a refined prompt before Accepted has granted them", () => {
    const s = new CloudRequestState(1, { kvCredit: 64n });
    expect(violationOf(() => s.beforeSend(chunk(0n, 4)))).toBe("PDD-KV-001: KvChunk without a grant");
    expect(violationOf(() => s.beforeSend(refined()))).toBe("PDD-ORD-005: RefinedPrompt not granted or twice");
  });

  it("RefinedPrompt: only when granted, and once", () => {
    expect(violationOf(() => sent(0).beforeSend(refined()))).toBe("PDD-ORD-005: RefinedPrompt not granted or twice");
    const s = new CloudRequestState(1);
    s.beforeSend(accepted(8, { refine: true }));
    s.beforeSend(refined());
    expect(violationOf(() => s.beforeSend(refined()))).toBe("PDD-ORD-005: RefinedPrompt not granted or twice");
  });

  it("End: after Accepted or an Error, and nothing after it", () => {
    expect(violationOf(() => new CloudRequestState(1).beforeSend(end(1)))).toBe(
      "PDD-ORD-001: End before Accepted or Error",
    );
    const s = sent(2);
    s.beforeSend(end(1, 2));
    expect(violationOf(() => s.beforeSend(batch(2, 1)))).toBe("PDD-ORD-003: tokenBatch after End");
    expect(violationOf(() => s.beforeSend(end(1, 2)))).toBe("PDD-ORD-003: end after End");
    const refused = new CloudRequestState(1);
    refused.beforeSend(error());
    refused.beforeSend(end(6));
    expect(refused.phase).toBe("closed");
  });

  it("frames with no request rule pass (a Pong on the request's behalf changes nothing)", () => {
    const s = sent(1);
    s.beforeSend(cloud({ case: "pong", value: { nonce: 1n } }));
    expect(s).toMatchObject({ phase: "streaming", sent: 1 });
  });
});

describe("the cloud's request state machine: what the device asks", () => {
  it("a Takeover at k ≤ sent stops the request; one past sent is a violation; later ones are ignored", () => {
    const s = sent(3);
    expect(violationOf(() => s.receive(takeover(4)))).toBe(
      "PDD-TAKEOVER-006: Takeover at 4 but only 3 tokens were sent",
    );
    expect(s.phase).toBe("streaming");
    expect(s.receive(takeover(3))).toEqual({ kind: "takeover", index: 3 });
    expect(s).toMatchObject({ phase: "stopping", stopped: { kind: "takeover", index: 3 } });
    expect(s.receive(takeover(1))).toEqual({ kind: "ignored" });
    expect(s.receive(cancel())).toEqual({ kind: "ignored" });
    expect(s.stopped).toEqual({ kind: "takeover", index: 3 });
  });

  it("a Cancel stops the request with its code; a Takeover after it is ignored", () => {
    const s = sent(2);
    expect(s.receive(cancel(ErrorCode.DEADLINE_EXCEEDED))).toEqual({
      kind: "cancel",
      code: ErrorCode.DEADLINE_EXCEEDED,
    });
    expect(s).toMatchObject({ phase: "stopping", stopped: { kind: "cancel" } });
    expect(s.receive(takeover(1))).toEqual({ kind: "ignored" });
  });

  it("KvCredit adds to the credit; KvAbort and DeviceProgress are passed on; others are ignored", () => {
    const s = new CloudRequestState(1, { kvCredit: 4n });
    expect(s.receive(device({ case: "kvCredit", value: { requestId: 1, bytes: 6n } }))).toEqual({
      kind: "credit",
      bytes: 6n,
    });
    expect(s.kvCredit).toBe(10n);
    expect(s.receive(device({ case: "kvAbort", value: { requestId: 1, code: ErrorCode.KV_INTEGRITY } }))).toEqual({
      kind: "kv-abort",
      code: ErrorCode.KV_INTEGRITY,
    });
    expect(s.receive(device({ case: "progress", value: { requestId: 1 } }))).toEqual({ kind: "progress" });
    expect(s.receive(device({ case: "ping", value: { nonce: 1n } }))).toEqual({ kind: "ignored" });
  });

  it("after its End, everything the device sends for the request is ignored (PDD-SM-003)", () => {
    const s = sent(2);
    s.beforeSend(end(1, 2));
    expect(s.receive(takeover(9))).toEqual({ kind: "ignored" });
    expect(s.receive(device({ case: "kvCredit", value: { requestId: 1, bytes: 6n } }))).toEqual({ kind: "ignored" });
    expect(s.kvCredit).toBe(0n);
  });
});
