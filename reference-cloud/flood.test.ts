/**
 * A flood is counted as it arrives, not as the cloud gets to it
 * (PDD-DOS-001): a loaded cloud serving fewer than 1,000 frames a second
 * once answered 638,500 Pings in 20 s without ever seeing more than 1,000 in
 * one second, and another device's tokens stalled 1.9 s (issue 13, item 8).
 * Here the cloud serves nothing at all past the Hello until the test lets it,
 * the slowest cloud there is; no time is measured.
 */
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import {
  DeviceFrameSchema,
  ErrorCode,
  MAX_PINGS_PER_SECOND,
  MAX_REQUESTS_PER_SECOND,
  type CloudFrame,
} from "../proto/index.js";
import { memoryCloud, stalledCloud, type MemoryCloud } from "./test/memory-cloud.js";

let cloud: MemoryCloud | undefined;
afterEach(() => cloud?.device.abort());

const ping = (nonce: number) => create(DeviceFrameSchema, { body: { case: "ping", value: { nonce: BigInt(nonce) } } });
const pongs = (frames: CloudFrame[]) => frames.filter((f) => f.body.case === "pong").length;
const ask = (requestId: number) =>
  create(DeviceFrameSchema, {
    body: { case: "prefillRequest", value: { requestId, prompt: { case: "text", value: "The fox." } } },
  });

describe("a Ping flood is counted on arrival (PDD-DOS-001)", () => {
  it("a cloud that serves no frame while the flood arrives still ends the flooding connection with RESOURCE_EXHAUSTED, unanswered", async () => {
    let serve!: () => void;
    const served = new Promise<void>((r) => (serve = r));
    const c = await memoryCloud({}, { wrap: stalledCloud(served) });
    cloud = c;
    const seen: CloudFrame[] = [];
    void c.frame((f) => seen.push(f) < 0); // collects every frame the device receives, to the end
    const error = c.frame((f) => f.body.case === "error");
    // Three times the limit: more than 1,000 land in one second even if the sender is descheduled midway.
    for (let n = 1; n <= 3 * MAX_PINGS_PER_SECOND; n++) void c.device.send(ping(n));
    const f = await error;
    serve();
    await c.served;
    expect(f.body.case === "error" && f.body.value).toMatchObject({ requestId: 0, code: ErrorCode.RESOURCE_EXHAUSTED });
    expect(f.body.value).toHaveProperty("message", expect.stringContaining("PDD-DOS-001"));
    // The Pings queued behind the stalled loop are dropped, not answered after the error.
    expect(pongs(seen)).toBe(0);
    expect(await c.device.closed).toMatchObject({ code: ErrorCode.RESOURCE_EXHAUSTED });
  });

  it("1,000 Pings at once are all answered, with no error", async () => {
    const c = await memoryCloud();
    cloud = c;
    const seen: CloudFrame[] = [];
    void c.frame((f) => seen.push(f) < 0); // collects every frame
    let answered = 0;
    const last = c.frame((f) => f.body.case === "pong" && ++answered === MAX_PINGS_PER_SECOND);
    for (let n = 1; n <= MAX_PINGS_PER_SECOND; n++) void c.device.send(ping(n));
    await last;
    // Counted on arrival, an error for the 1,000th would have been sent before the Pongs still queued.
    expect(seen.filter((f) => f.body.case === "error")).toEqual([]);
  });

  it("a PrefillRequest flood is counted the same way: the connection ends with RESOURCE_EXHAUSTED and none of the queued requests is served", async () => {
    // Mutation check: without the PrefillRequest branch of countArrival, the stalled cloud never errors here
    // (the wait for the error outlasts the test timeout).
    let serve!: () => void;
    const served = new Promise<void>((r) => (serve = r));
    const c = await memoryCloud({}, { wrap: stalledCloud(served) });
    cloud = c;
    const seen: CloudFrame[] = [];
    void c.frame((f) => seen.push(f) < 0);
    const error = c.frame((f) => f.body.case === "error" && f.body.value.requestId === 0);
    for (let n = 1; n <= 3 * MAX_REQUESTS_PER_SECOND; n++) void c.device.send(ask(n));
    const f = await error;
    serve();
    await c.served;
    expect(f.body.value).toMatchObject({ requestId: 0, code: ErrorCode.RESOURCE_EXHAUSTED });
    expect(f.body.value).toHaveProperty("message", expect.stringContaining("PrefillRequests in one second"));
    // Nothing is answered for a request: no Accepted, no Busy, no per-request error, no End.
    expect(seen.filter((x) => x.body.case !== "helloAck" && x !== f)).toEqual([]);
    expect(await c.device.closed).toMatchObject({ code: ErrorCode.RESOURCE_EXHAUSTED });
  });
});
