import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema, type CloudFrame } from "../proto/index.js";
import { EarlyKvChunks } from "./early-kv.js";

const chunk = (offset: number, size: number): CloudFrame =>
  create(CloudFrameSchema, {
    body: { case: "kvChunk", value: { requestId: 1, offset: BigInt(offset), data: new Uint8Array(size) } },
  });
const accepted = create(CloudFrameSchema, {
  body: { case: "accepted", value: { requestId: 1, cloudTokenBudget: 4, kv: { granted: true } } },
});
const end = create(CloudFrameSchema, { body: { case: "end", value: { requestId: 1, reason: 1 } } });

function early(credit: number): EarlyKvChunks {
  const e = new EarlyKvChunks();
  e.sent(
    create(DeviceFrameSchema, {
      body: { case: "prefillRequest", value: { requestId: 1, kv: { initialCreditBytes: BigInt(credit) } } },
    }),
  );
  return e;
}

describe("KvChunks that overtake Accepted on WebTransport (PDD-WT-007)", () => {
  it("are held, then handed over right after Accepted in the order received", () => {
    const e = early(8192);
    const [a, b] = [chunk(0, 4096), chunk(4096, 4096)];
    expect(e.route(1, a)).toEqual([]);
    expect(e.route(1, b)).toEqual([]);
    expect(e.route(1, accepted)).toEqual([accepted, a, b]);
    const c = chunk(8192, 10);
    expect(e.route(1, c)).toEqual([c]);
  });

  it("are handed over as sent once they exceed the initial credit: the cloud's violation, not an overtaking", () => {
    const e = early(4096);
    const a = chunk(0, 4096);
    expect(e.route(1, a)).toEqual([]);
    const b = chunk(4096, 1);
    expect(e.route(1, b)).toEqual([a, b]);
  });

  it("are discarded when the request ends before Accepted", () => {
    const e = early(4096);
    expect(e.route(1, chunk(0, 100))).toEqual([]);
    expect(e.route(1, end)).toEqual([end]);
    expect(e.route(1, accepted)).toEqual([accepted]);
  });
});
