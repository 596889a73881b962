/**
 * The simulated engine keeps the promises the peers rely on from llama.cpp:
 * greedy continuations depend only on the tokens held (so catch-up and KV
 * import continue identically), images of other models are refused, and
 * sequences are a bounded pool. No assertion here is about time.
 */
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../proto/index.js";
import { CLOUD_GPU, INSTANT, PHONE, SimEngine, loadEngine } from "./index.js";
import { greedy } from "./test/greedy.js";

const fast = (profile = INSTANT, sequences = 2) => new SimEngine({ profile, sequences });

const decode = greedy;

describe("simulated engine", () => {
  it("tokenizes bytes with a BOS and gives every token its byte", () => {
    const e = fast();
    const ids = e.tokenize("ï!");
    expect(ids).toEqual([256, 0xc3, 0xaf, 0x21]);
    expect(Buffer.from(e.bytes(ids)).toString("utf8")).toBe("ï!");
    expect(e.tokenizeContinuation("a")).toEqual([0x61]);
  });

  it("continues identically after prefilling the prompt plus the tokens it was given (catch-up)", async () => {
    const e = fast();
    const prompt = e.tokenize("The quick brown fox");
    const whole = await decode(e, prompt, 40);
    for (const k of [1, 7, 20])
      expect(await decode(e, [...prompt, ...whole.slice(0, k)], 40 - k)).toEqual(whole.slice(k));
    expect(new Set(whole).size).toBeGreaterThan(3); // not one repeated token
  });

  it("continues identically from an exported image in another engine of the same model", async () => {
    const cloud = new SimEngine({ profile: INSTANT, sequences: 1 });
    const device = new SimEngine({ profile: { ...INSTANT, name: "slower" }, sequences: 1 });
    const prompt = cloud.tokenize("a prompt to carry over");
    const a = await cloud.acquire();
    await a.prefill(prompt);
    const first: number[] = [];
    for await (const t of a.generate({}, 5)) first.push(t);
    const image = await a.exportState();
    const rest: number[] = [];
    for await (const t of a.generate({}, 10)) rest.push(t);
    await a.release();
    expect(image.length).toBe(Math.max(44 + 4 * (prompt.length + 4), (prompt.length + 4) * INSTANT.kvBytesPerToken));

    const b = await device.acquire();
    // The image covers the prompt and the tokens before the pending one; the last it covers becomes pending.
    await b.importState(image, cloud.info.modelFingerprint, first[3]);
    const again: number[] = [];
    for await (const t of b.generate({}, 11)) again.push(t);
    expect(again).toEqual([first[4], ...rest]);
    await b.release();
  });

  it("refuses images of another model and damaged images with typed errors", async () => {
    const phone = new SimEngine({ profile: PHONE });
    const gpu = new SimEngine({ profile: CLOUD_GPU });
    expect(phone.info.modelFingerprint).not.toEqual(gpu.info.modelFingerprint);
    expect(phone.info.tokenizerFingerprint).toEqual(gpu.info.tokenizerFingerprint);
    const image = gpu.image([256, 1, 2]);
    const slot = await phone.acquire();
    await expect(slot.importState(image, gpu.info.modelFingerprint)).rejects.toMatchObject({
      code: ErrorCode.MODEL_MISMATCH,
    });
    await expect(slot.importState(image, phone.info.modelFingerprint)).rejects.toMatchObject({
      code: ErrorCode.KV_INTEGRITY,
    });
    const own = phone.image([256, 1, 2]);
    await expect(slot.importState(own.subarray(0, own.length - 1), phone.info.modelFingerprint)).rejects.toMatchObject({
      code: ErrorCode.KV_INTEGRITY,
    });
    await expect(slot.importState(new Uint8Array(64), phone.info.modelFingerprint)).rejects.toMatchObject({
      code: ErrorCode.KV_INTEGRITY,
    });
    // An image of other tokens than the ones it must cover (PDD-KV-013).
    await expect(slot.importState(own, phone.info.modelFingerprint, undefined, [256, 1, 3])).rejects.toMatchObject({
      code: ErrorCode.KV_INTEGRITY,
    });
    await slot.importState(own, phone.info.modelFingerprint, undefined, [256, 1, 2]);
    expect(slot.evaluated).toBe(3);
    await slot.release();
  });

  it("stops a prefill early when asked, holding the tokens it says", async () => {
    const e = fast();
    const slot = await e.acquire();
    const r = await slot.prefill(e.tokenize("x".repeat(99)), { chunk: 10, onChunk: (done) => done < 30 });
    expect(r.done).toBe(30);
    expect(slot.position).toBe(30);
    await slot.release();
  });

  it("gives zero surprisal to the tokens the model predicts and more to others", async () => {
    const e = fast();
    const prompt = e.tokenize("predict me");
    const said = await decode(e, prompt, 8);
    const slot = await e.acquire();
    const r = await slot.prefill([...prompt, ...said, 0x5a], { surprisal: true });
    await slot.release();
    const s = [...r.surprisal!];
    expect(s.slice(prompt.length, prompt.length + 8)).toEqual(new Array(8).fill(0));
    expect(s[s.length - 1]).toBeGreaterThan(0);
  });

  it("is a pool of sequences: the next acquire waits for a release, and held time is counted", async () => {
    const e = fast(INSTANT, 1);
    const a = await e.acquire();
    let got = false;
    const b = e.acquire().then((s) => {
      got = true;
      return s;
    });
    await new Promise((r) => setImmediate(r)); // a free sequence would have been handed over by now
    expect(got).toBe(false);
    expect(e.busy).toBe(1);
    await a.release();
    await (await b).release();
    expect(e.usage.acquired).toBe(2);
    expect(e.usage.heldMs).toBeGreaterThan(0);
    expect(e.busy).toBe(0);
  });

  it("charges each decode step at the batch held at that step (batched decoding)", async () => {
    const batches: number[] = [];
    const e = new SimEngine({ profile: INSTANT, sequences: 3, decodeSlowdown: (b) => (batches.push(b), 1) });
    const a = await e.acquire();
    await a.prefill(e.tokenize("ab"));
    for await (const _ of a.generate({}, 1));
    const b = await e.acquire();
    for await (const _ of a.generate({}, 1));
    await b.release();
    await a.release();
    expect(batches).toEqual([1, 2]);
  });

  it("is loaded by name, and an unknown profile is a typed error", async () => {
    const e = await loadEngine({ modelPath: "sim:phone", sequences: 3 });
    expect(e.capacity).toBe(3);
    expect(e.info.name).toBe("sim TinyLlama-1.1B");
    await expect(loadEngine({ modelPath: "sim:nope" })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
  });
});
