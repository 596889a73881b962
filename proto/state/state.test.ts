import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  CloudFrameSchema,
  DeviceFrameSchema,
  PrefillRequestSchema,
  type CloudFrame,
  type DeviceFrame,
} from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode, PddError } from "../errors.js";
import { CloudRequestState } from "./cloud-request.js";
import { DeviceRequestState } from "./device-request.js";

const cloud = (body: CloudFrame["body"]) => create(CloudFrameSchema, { body } as never);
const device = (body: DeviceFrame["body"]) => create(DeviceFrameSchema, { body } as never);
const tok = (id: number) => ({ id, piece: new Uint8Array([0x61 + (id % 26)]) });
const accepted = (budget = 8, extra = {}) =>
  cloud({ case: "accepted", value: { requestId: 1, cloudTokenBudget: budget, ...extra } } as never);
const first = () => cloud({ case: "firstToken", value: { requestId: 1, token: tok(0) } } as never);
const batch = (start: number, n: number) =>
  cloud({
    case: "tokenBatch",
    value: { requestId: 1, startIndex: start, tokens: Array.from({ length: n }, (_, i) => tok(start + i)) },
  } as never);
const end = (reason: number, tokenCount: number, sent = tokenCount) =>
  cloud({
    case: "end",
    value: { requestId: 1, reason, tokenCount, usage: { sentTokens: sent, decodedTokens: sent } },
  } as never);

function violationOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PddError);
    expect((e as PddError).code).toBe(ErrorCode.PROTOCOL_VIOLATION);
    return (e as PddError).message;
  }
  throw new Error("expected a protocol violation");
}

describe("device request state machine", () => {
  const newState = (extra = {}) =>
    new DeviceRequestState(create(PrefillRequestSchema, { requestId: 1, cloudTokenBudget: 8, ...extra }));

  it("accepts a served request and closes on End", () => {
    const s = newState();
    s.receive(accepted());
    s.receive(first());
    s.receive(batch(1, 3));
    const ev = s.receive(end(1, 4));
    expect(ev).toMatchObject({ kind: "end", keep: 4 });
    expect(s.phase).toBe("closed");
  });

  it("rejects a batch that skips an index, citing PDD-IDX-001", () => {
    const s = newState();
    s.receive(accepted());
    s.receive(first());
    expect(violationOf(() => s.receive(batch(2, 1)))).toMatch(/PDD-IDX-001/);
  });

  it("rejects a batch before the first token and tokens beyond the budget", () => {
    const s = newState();
    s.receive(accepted(2));
    expect(violationOf(() => s.receive(batch(1, 1)))).toMatch(/PDD-ORD-002/);
    s.receive(first());
    expect(violationOf(() => s.receive(batch(1, 2)))).toMatch(/PDD-IDX-003/);
  });

  it("discards tokens in flight at the takeover, and the buffered ones past k", () => {
    const s = newState();
    s.receive(accepted());
    s.receive(first());
    s.receive(batch(1, 4)); // tokens 0..4 received
    s.beforeSend(device({ case: "takeover", value: { requestId: 1, index: 3 } } as never));
    const ev = s.receive(batch(5, 2)); // in flight
    expect(ev).toMatchObject({ kind: "tokens", tokens: [], discarded: 2 });
    expect(s.receive(end(2, 3, 7))).toMatchObject({ kind: "end", keep: 3 });
  });

  it("refuses to take over beyond what it has received", () => {
    const s = newState();
    s.receive(accepted());
    s.receive(first());
    expect(
      violationOf(() => s.beforeSend(device({ case: "takeover", value: { requestId: 1, index: 2 } } as never))),
    ).toMatch(/PDD-TAKEOVER-001/);
  });

  it("keeps only [0, k) when the cloud's budget End crossed the takeover", () => {
    const s = newState();
    s.receive(accepted(3));
    s.receive(first());
    s.receive(batch(1, 2));
    s.beforeSend(device({ case: "takeover", value: { requestId: 1, index: 2 } } as never));
    expect(s.receive(end(1, 3))).toMatchObject({ kind: "end", keep: 2 });
  });

  it("accepts the cloud's budget End that crossed its Cancel, whatever tokens it ignored (PDD-CANCEL-002)", () => {
    // Found by the live trace replay: a device that finished before the cloud's first token cancelled,
    // and the cloud, already done, ended with BUDGET_EXHAUSTED and 4 tokens the device had ignored.
    const s = newState();
    s.receive(accepted(4));
    s.beforeSend(device({ case: "cancel", value: { requestId: 1 } } as never));
    expect(s.receive(first())).toMatchObject({ kind: "ignored" });
    expect(s.receive(batch(1, 3))).toMatchObject({ kind: "ignored" });
    expect(s.receive(end(1, 4))).toMatchObject({ kind: "end", keep: 0 });
    expect(s.phase).toBe("closed");
  });

  it("ignores frames after End and rejects frames before Accepted", () => {
    const s = newState();
    expect(violationOf(() => s.receive(first()))).toMatch(/PDD-ORD-001/);
    const t = newState();
    t.receive(accepted());
    t.receive(end(5, 0));
    expect(t.receive(batch(1, 1))).toEqual({ kind: "ignored" });
  });

  it("requires End with reason ERROR after a request Error", () => {
    const s = newState();
    s.receive(cloud({ case: "error", value: { requestId: 1, code: ErrorCode.PROMPT_TOO_LONG } } as never));
    expect(violationOf(() => s.receive(end(1, 0)))).toMatch(/PDD-ORD-004/);
  });

  it("enforces KV credit, order and the last-chunk checksum field", () => {
    const s = newState({ kv: { initialCreditBytes: 4n } });
    s.receive(accepted(8, { kv: { granted: true } }));
    const chunk = (offset: bigint, n: number, sha = false) =>
      cloud({
        case: "kvChunk",
        value: {
          requestId: 1,
          offset,
          totalBytes: 8n,
          data: new Uint8Array(n),
          imageSha256: sha ? new Uint8Array(32) : new Uint8Array(),
        },
      } as never);
    s.receive(chunk(0n, 4));
    expect(violationOf(() => s.receive(chunk(4n, 4, true)))).toMatch(/PDD-KV-008/);
    const t = newState({ kv: { initialCreditBytes: 8n } });
    t.receive(accepted(8, { kv: { granted: true } }));
    expect(violationOf(() => t.receive(chunk(2n, 2)))).toMatch(/PDD-KV-004/);
    t.receive(chunk(0n, 4));
    expect(violationOf(() => t.receive(chunk(4n, 4, false)))).toMatch(/PDD-KV-006/);
  });

  it("rejects KV chunks that were not granted", () => {
    const s = newState({ kv: { initialCreditBytes: 4n } });
    s.receive(accepted(8, { kv: { granted: false, refusal: ErrorCode.MODEL_MISMATCH } }));
    expect(
      violationOf(() =>
        s.receive(
          cloud({ case: "kvChunk", value: { requestId: 1, totalBytes: 1n, data: new Uint8Array(1) } } as never),
        ),
      ),
    ).toMatch(/PDD-KV-001/);
  });
});

describe("cloud request state machine", () => {
  const served = () => {
    const s = new CloudRequestState(1);
    s.beforeSend(accepted(8));
    s.beforeSend(first());
    s.beforeSend(batch(1, 2));
    return s;
  };

  it("stops sending tokens once a takeover is processed", () => {
    const s = served();
    expect(s.receive(device({ case: "takeover", value: { requestId: 1, index: 2 } } as never))).toEqual({
      kind: "takeover",
      index: 2,
    });
    expect(violationOf(() => s.beforeSend(batch(3, 1)))).toMatch(/PDD-TAKEOVER-004/);
    s.beforeSend(end(2, 2));
    expect(s.phase).toBe("closed");
  });

  it("treats a takeover beyond the tokens sent as a violation", () => {
    expect(
      violationOf(() => served().receive(device({ case: "takeover", value: { requestId: 1, index: 9 } } as never))),
    ).toMatch(/PDD-TAKEOVER-006/);
  });

  it("ignores takeover and cancel that crossed its End", () => {
    const s = served();
    s.beforeSend(end(1, 3));
    expect(s.receive(device({ case: "takeover", value: { requestId: 1, index: 1 } } as never))).toEqual({
      kind: "ignored",
    });
    expect(s.receive(device({ case: "cancel", value: { requestId: 1 } } as never))).toEqual({ kind: "ignored" });
  });

  it("never sends a frame after End", () => {
    const s = served();
    s.beforeSend(end(1, 3));
    expect(violationOf(() => s.beforeSend(batch(3, 1)))).toMatch(/PDD-ORD-003/);
  });

  it("waits for credit before sending KV bytes", () => {
    const s = new CloudRequestState(1, { kvCredit: 2n });
    s.beforeSend(accepted(8, { kv: { granted: true } }));
    const chunk = cloud({
      case: "kvChunk",
      value: { requestId: 1, offset: 0n, totalBytes: 4n, data: new Uint8Array(4) },
    } as never);
    expect(violationOf(() => s.beforeSend(chunk))).toMatch(/PDD-KV-008/);
    s.receive(device({ case: "kvCredit", value: { requestId: 1, bytes: 2n } } as never));
    s.beforeSend(chunk);
    expect(s.kvAvailable).toBe(0n);
  });
});
