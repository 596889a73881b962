/**
 * Admission tickets: whatever a request does after `admit` (its Accepted send
 * fails because the peer is gone, it is cancelled while queued, it is granted
 * a slot it never uses), `leave()` gives back exactly what it holds, once
 * (issue 13, item 1: a failed send leaked the slot for good).
 */
import { describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import { Admission } from "./scheduler.js";

const gauges = () => {
  const seen = { active: 0, queued: 0 };
  return { seen, onChange: (active: number, queued: number) => Object.assign(seen, { active, queued }) };
};

describe("admission tickets", () => {
  it("give back a slot admitted at once, once, however often they leave", () => {
    const g = gauges();
    const a = new Admission(1, 4, g.onChange);
    const t = a.admit(0);
    expect(g.seen).toEqual({ active: 1, queued: 0 });
    t.leave();
    t.leave();
    expect(g.seen).toEqual({ active: 0, queued: 0 });
    expect(a.admit(0).position).toBe(0); // the slot is free again
  });

  it("give back a queue place, and the slot it was granted meanwhile, when its request never awaited the grant", async () => {
    const g = gauges();
    const a = new Admission(1, 4, g.onChange);
    const first = a.admit(0);
    const queued = a.admit(0); // its request's Accepted send fails: it never awaits `granted`
    expect(queued.position).toBe(1);
    first.leave(); // the slot passes to the queued ticket
    expect(g.seen).toEqual({ active: 1, queued: 0 });
    queued.leave();
    expect(g.seen).toEqual({ active: 0, queued: 0 });
    const other = a.admit(0);
    queued.leave();
    expect(other.position).toBe(0);
    expect(g.seen).toEqual({ active: 1, queued: 0 }); // a second leave took nothing from the next holder
  });

  it("leaving the queue rejects the grant with CANCELLED and holds nothing", async () => {
    const g = gauges();
    const a = new Admission(1, 4, g.onChange);
    const first = a.admit(0);
    const queued = a.admit(0);
    queued.cancel();
    await expect(queued.granted).rejects.toMatchObject({ code: ErrorCode.CANCELLED });
    queued.leave();
    expect(g.seen).toEqual({ active: 1, queued: 0 });
    first.leave();
    expect(g.seen).toEqual({ active: 0, queued: 0 });
  });

  it("refuses past the queue limit with RESOURCE_EXHAUSTED", () => {
    const a = new Admission(1, 1);
    a.admit(0);
    a.admit(0);
    expect(() => a.admit(0)).toThrow(PddError);
  });
});
