/**
 * Limits that the conformance suite cannot set from outside: the cloud's
 * total capacity (sequences + queue) and the idle timeout. Hitting a limit
 * refuses that request alone; the connection and its other requests carry on.
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { Codec, DeviceFrameSchema, EndReason, ErrorCode, type CloudFrame } from "../proto/index.js";
import { connect, type DeviceStream } from "../transports/index.js";
import { startCloud, type CloudPeer } from "./index.js";

let cloud: CloudPeer;
beforeAll(async () => {
  // One sequence and a queue of one: the third concurrent request is over capacity.
  cloud = await startCloud({
    model: ensureDefaultModel("tiny"),
    threads: 1,
    sequences: 1,
    queueLimit: 1,
    logLevel: "silent",
    limits: { idleTimeoutMs: 400 },
    listen: { ws: "127.0.0.1:0" },
  });
});
afterAll(() => cloud.close({ drainSeconds: 0 }));

async function open(): Promise<{
  s: DeviceStream;
  frames: CloudFrame[];
  wait: (p: (f: CloudFrame) => boolean) => Promise<CloudFrame>;
}> {
  const s = await connect(cloud.urls.ws!);
  const frames: CloudFrame[] = [];
  const waiters: { p: (f: CloudFrame) => boolean; r: (f: CloudFrame) => void; fail: (e: Error) => void }[] = [];
  let ended = false;
  void (async () => {
    try {
      for await (const f of s) {
        frames.push(f);
        for (const w of waiters.splice(0)) w.p(f) ? w.r(f) : waiters.push(w);
      }
    } catch {
      // closed
    }
    ended = true;
    for (const w of waiters.splice(0)) w.fail(new Error("the connection closed before the awaited frame"));
  })();
  await s.send(
    create(DeviceFrameSchema, {
      body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } },
    }),
  );
  const wait = (p: (f: CloudFrame) => boolean) => {
    const hit = frames.find(p);
    if (hit) return Promise.resolve(hit);
    if (ended) return Promise.reject(new Error("the connection closed before the awaited frame"));
    return new Promise<CloudFrame>((r, fail) => waiters.push({ p, r, fail }));
  };
  return { s, frames, wait };
}

const ask = (s: DeviceStream, id: number, extra: Record<string, unknown> = {}) =>
  s.send(
    create(DeviceFrameSchema, {
      body: {
        case: "prefillRequest",
        value: { requestId: id, prompt: { case: "text", value: "The fox." }, cloudTokenBudget: 6, ...extra },
      },
    }),
  );
const of = (id: number, kind: string) => (f: CloudFrame) =>
  f.body.case === kind && (f.body.value as { requestId?: number }).requestId === id;

describe("cloud limits", () => {
  it("over total capacity, only the request over it is refused (RESOURCE_EXHAUSTED, retryable); the others finish", async () => {
    const c = await open();
    try {
      await ask(c.s, 1, { cloudTokenBudget: 40, targetTpotUs: 50_000 }); // runs
      await c.wait(of(1, "firstToken"));
      await ask(c.s, 2); // queued
      await ask(c.s, 3); // over capacity
      const err = await c.wait(of(3, "error"));
      expect(err.body.case === "error" && err.body.value.code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
      expect(err.body.case === "error" && err.body.value.retryable).toBe(true);
      const end1 = await c.wait(of(1, "end"));
      const end2 = await c.wait(of(2, "end"));
      expect([end1, end2].map((f) => f.body.case === "end" && f.body.value.tokenCount)).toEqual([40, 6]);
    } finally {
      c.s.abort();
    }
  });

  it("closes a connection idle past idle_timeout_ms, but not one with a live request", async () => {
    const idle = await open();
    const busy = await open();
    let busyClosed = false;
    void busy.s.closed.then(() => (busyClosed = true));
    try {
      // 200 tokens at 100 ms: a request that outlives the 400 ms timeout many times over; it ends on Cancel.
      await ask(busy.s, 1, { cloudTokenBudget: 200, targetTpotUs: 100_000 });
      await busy.wait(of(1, "firstToken"));
      const info = await idle.s.closed;
      // Goodbye{TIMEOUT}, then a graceful close, not a connection error (PDD-CONN-020).
      expect(info.code).toBe(ErrorCode.UNSPECIFIED);
      const bye = idle.frames.find((f) => f.body.case === "goodbye");
      expect(bye?.body.case === "goodbye" && bye.body.value.code).toBe(ErrorCode.TIMEOUT);
      // The busy connection outlived it, its request still running: a token comes after the idle close.
      const seen = busy.frames.length;
      await busy.wait((f) => busy.frames.indexOf(f) >= seen && of(1, "tokenBatch")(f));
      expect(busyClosed).toBe(false);
      expect(busy.frames.some(of(1, "end"))).toBe(false);
      await busy.s.send(
        create(DeviceFrameSchema, { body: { case: "cancel", value: { requestId: 1, code: ErrorCode.CANCELLED } } }),
      );
      const end = await busy.wait(of(1, "end"));
      expect(end.body.case === "end" && end.body.value.reason).toBe(EndReason.CANCELLED);
    } finally {
      idle.s.abort();
      busy.s.abort();
    }
  });
});
