import { describe, expect, it } from "vitest";
import { Admission } from "./openai-admission.js";
import { ApiError } from "./openai-errors.js";

describe("admission to the device's sequences", () => {
  it("runs `parallel` at once, queues `queue` more in order, and refuses the next with 503 and Retry-After", async () => {
    const a = new Admission(2, 1, 3);
    const signal = new AbortController().signal;
    const r1 = await a.enter(signal);
    await a.enter(signal);
    const third = a.enter(signal);
    const refused = await a.enter(signal).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(503);
    expect((refused as ApiError).headers["retry-after"]).toBe("3");
    expect(a.queued).toBe(1);
    r1();
    r1(); // a second release of the same place frees nothing more
    expect(a.active).toBe(2);
    (await third)();
    expect(a.active).toBe(1);
  });

  it("a waiting request whose client leaves frees its place in the queue", async () => {
    const a = new Admission(1, 1);
    const held = await a.enter(new AbortController().signal);
    const gone = new AbortController();
    const waiting = a.enter(gone.signal);
    gone.abort(new Error("client gone"));
    await expect(waiting).rejects.toThrow("client gone");
    expect(a.queued).toBe(0);
    const next = a.enter(new AbortController().signal);
    held();
    (await next)();
    expect(a.active).toBe(0);
  });
});
