/**
 * The llama-server engine against a fake llama-server (engine/test/): token
 * IDs in and out, budgets as n_predict, held-back chunks recovered, aborts
 * that free the backend's slot, routing and health across backends, KV by
 * slot save, and a typed error for each way a backend can be wrong.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import { llamaRuntime } from "./engine.js";
import { createModel, fingerprints, LlamaServerEngine, PRESETS } from "./index.js";
import { readSeqStateHeader, toSequenceImage, toServerImage } from "./llama-server-kv.js";
import { describeModel } from "./model-info.js";
import { until } from "../proto/test/until.js";
import { greedy } from "./test/greedy.js";
import { FakeLlamaServer, fakeModel, type FakeModel, type FakeOptions } from "./test/fake-llama-server.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-llama-server-"));
const tiny = join(dir, "tiny.gguf");
const small = join(dir, "small.gguf");
let vocab: LlamaModel;
let model: FakeModel;
const fakes: FakeLlamaServer[] = [];
const engines: LlamaServerEngine[] = [];

beforeAll(async () => {
  createModel(tiny, PRESETS.tiny);
  createModel(small, PRESETS.small);
  vocab = await (await llamaRuntime()).loadModel({ modelPath: tiny, vocabOnly: true });
  model = fakeModel(tiny, (text) => vocab.tokenize(text, false) as number[]);
});
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  for (const f of fakes.splice(0)) await f.close();
});
afterAll(async () => {
  await vocab.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function fake(o: Partial<FakeOptions> = {}): Promise<FakeLlamaServer> {
  const f = await FakeLlamaServer.start({ model, ...o });
  fakes.push(f);
  return f;
}

async function connect(backends: FakeLlamaServer[], o: { slotSaveDir?: string } = {}): Promise<LlamaServerEngine> {
  const e = await LlamaServerEngine.connect({ backends: backends.map((b) => b.url), healthIntervalMs: 50, ...o });
  engines.push(e);
  return e;
}

const rejection = async (p: Promise<unknown>) => {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(PddError);
  return e as PddError;
};

describe("llama-server engine: the model", () => {
  it("announces the GGUF's Appendix B fingerprints and counts every backend's slots", async () => {
    const e = await connect([await fake({ slots: 2, nCtx: 1024 }), await fake({ slots: 3, nCtx: 512 })]);
    const fp = fingerprints(tiny);
    expect(Buffer.from(e.info.modelFingerprint).equals(Buffer.from(fp.model))).toBe(true);
    expect(Buffer.from(e.info.tokenizerFingerprint).equals(Buffer.from(fp.tokenizer))).toBe(true);
    expect(e.capacity).toBe(5);
    expect(e.contextSize).toBe(512);
    expect(e.scoresPrompts).toBe(false);
    expect(e.tokenize("The quick brown fox")[0]).toBe(1); // BOS, as the model asks
  });

  it("waits for a backend that is still loading its model", async () => {
    const f = await fake({ loadingFor: 2 });
    await connect([f]);
  });
});

describe("llama-server engine: decoding", () => {
  it("sends the prompt as token IDs, the budget as n_predict, and yields the streamed token IDs", async () => {
    const f = await fake();
    const e = await connect([f]);
    const prompt = e.tokenize("the quick brown fox");
    expect(await greedy(e, prompt, 12)).toEqual(f.answer(prompt, 12));
    const sent = f.completions.at(-1)!;
    expect(sent.prompt).toEqual(prompt);
    expect(sent.n_predict).toBe(12);
    expect(sent.stream).toBe(true);
  });

  it("recovers tokens llama-server held back (a partial UTF-8 character), in order", async () => {
    const held = new Set<number>();
    const f = await fake({ holdBack: held });
    const e = await connect([f]);
    const prompt = e.tokenize("the lazy dog");
    for (const i of [2, 3, 7]) held.add(prompt.length + i);
    expect(await greedy(e, prompt, 10)).toEqual(f.answer(prompt, 10));
  });

  it("recovers a held-back tail at the end of the budget", async () => {
    const held = new Set<number>();
    const f = await fake({ holdBack: held });
    const e = await connect([f]);
    const prompt = e.tokenize("the lazy dog");
    // The budget ends inside a character: a non-streamed request for just the tail fails, as llama-server's does.
    for (const i of [4, 5]) held.add(prompt.length + i);
    expect(await greedy(e, prompt, 6)).toEqual(f.answer(prompt, 6));
  });

  it.each([
    ["a token held back", [3]],
    ["a held-back tail at the end of the budget", [4, 5]],
  ])("sampled decoding (temperature > 0) with %s: INTERNAL, never tokens decoded again", async (_, positions) => {
    const held = new Set<number>();
    const f = await fake({ holdBack: held });
    const e = await connect([f]);
    const prompt = e.tokenize("the lazy dog");
    for (const i of positions) held.add(prompt.length + i);
    const slot = await e.acquire();
    await slot.prefill(prompt);
    const out: number[] = [];
    const err = await rejection(
      (async () => {
        for await (const t of slot.generate({ temperature: 0.8, seed: 7 }, 6)) out.push(t);
      })(),
    );
    await slot.release();
    expect(err.code).toBe(ErrorCode.INTERNAL);
    expect(err.message).toMatch(/sampled decoding \(temperature > 0\) cannot have the same tokens again/);
    expect(out).toEqual(f.answer(prompt, positions[0]!)); // the tokens before the held-back ones stand
    expect(f.completions.length).toBe(1); // nothing was asked again
    expect(e.backends()[0]!.healthy).toBe(true); // the backend did nothing wrong
  });

  it("aborts the backend request when the consumer stops, which frees the backend's slot", async () => {
    const f = await fake({ gated: true, slots: 1 });
    const e = await connect([f]);
    const slot = await e.acquire();
    await slot.prefill(e.tokenize("the quick brown fox"));
    const gen = slot.generate({}, 1000);
    f.release(2);
    await gen.next();
    await gen.next();
    expect(f.busy()).toBe(1);
    await gen.return(undefined); // Takeover or Cancel
    await f.idle();
    expect(f.busy()).toBe(0);
    await slot.release();
    expect(e.busy).toBe(0);
  });
});

describe("llama-server engine: backends", () => {
  it("routes each request to the least-loaded backend", async () => {
    const a = await fake({ slots: 2 });
    const b = await fake({ slots: 2 });
    const e = await connect([a, b]);
    const active = () => e.backends().map((x) => x.active);
    const s1 = await e.acquire();
    const s2 = await e.acquire();
    expect(active()).toEqual([1, 1]); // first-fit would put both on the first
    const s3 = await e.acquire();
    expect(active().sort()).toEqual([1, 2]);
    for (const s of [s1, s2, s3]) await s.release();
    expect(e.backends().every((x) => x.active === 0)).toBe(true);
  });

  it("takes a dead backend out of rotation and sends new requests to the others", async () => {
    const a = await fake();
    const b = await fake();
    const e = await connect([a, b]);
    await a.kill();
    await e.pool.check();
    expect(e.backends().find((x) => x.url === a.url)).toMatchObject({ healthy: false, failures: 1 });
    const prompt = e.tokenize("the dog");
    for (let i = 0; i < 3; i++) expect(await greedy(e, prompt, 4)).toEqual(b.answer(prompt, 4));
  });
});

describe("llama-server engine: health checks", () => {
  afterEach(() => vi.useRealTimers());

  it("a dead backend with no request on it leaves rotation within 1 s: at the health check one default period (250 ms) on", async () => {
    // Only the pool's period is faked: the check itself is real HTTP to the fakes, and its answer the event awaited.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const a = await fake();
    const b = await fake();
    const changes: { url: string; healthy: boolean; why: string }[] = [];
    const e = await LlamaServerEngine.connect({
      backends: [a.url, b.url],
      onBackendChange: (s, why) => changes.push({ url: s.url, healthy: s.healthy, why }),
    });
    engines.push(e);
    await a.kill();
    vi.advanceTimersByTime(249);
    expect(changes).toEqual([]); // no check before the period
    vi.advanceTimersByTime(1);
    await until(() => changes.length > 0, "the dead backend to leave rotation");
    expect(changes).toEqual([{ url: a.url, healthy: false, why: "GET /health failed" }]);
    expect(e.backends().map((x) => x.healthy)).toEqual([false, true]);
  });
});

describe("llama-server engine: a backend that dies, at each point of a request", () => {
  /** Starts a request on a gated fake and returns what must fail once the fake dies, with the fake's request to wait for. */
  type Start = (
    f: FakeLlamaServer,
    e: LlamaServerEngine,
    held: Set<number>,
  ) => Promise<{ fails: Promise<unknown>; requests: number }>;
  /** A slot decoding "the dog" with `released` tokens let out by the gated fake. */
  const decoding = async (f: FakeLlamaServer, e: LlamaServerEngine, released: number) => {
    const slot = await e.acquire();
    await slot.prefill(e.tokenize("the dog"));
    f.release(released);
    return { slot, gen: slot.generate({}, 100) };
  };
  const points: Record<string, Start> = {
    // The headers are out, no token yet: Node's fetch ended such a body as if it were complete (issue 19).
    "before its first token": async (f, e) => ({ fails: (await decoding(f, e, 0)).gen.next(), requests: 1 }),
    "between two tokens": async (f, e) => {
      const { gen } = await decoding(f, e, 1);
      await gen.next();
      return { fails: gen.next(), requests: 1 };
    },
    "while it recovers a held-back token": async (f, e, held) => {
      held.add(e.tokenize("the dog").length + 1);
      // Token 0, token 1 held back, token 2 shows the gap: the slot asks for token 1 again.
      const { gen } = await decoding(f, e, 3);
      await gen.next();
      return { fails: gen.next(), requests: 2 };
    },
    "while it brings the slot to the KV export": async (f, e) => {
      const { slot, gen } = await decoding(f, e, 2);
      await gen.next();
      await gen.next();
      return { fails: slot.exportState(), requests: 2 };
    },
  };

  it.each(Object.keys(points))(
    "%s: the request fails with UNAVAILABLE and the backend leaves rotation at once",
    async (point) => {
      const saves = mkdtempSync(join(dir, "slots-"));
      const held = new Set<number>();
      const f = await fake({ gated: true, holdBack: held, slotSavePath: saves });
      const e = await connect([f], { slotSaveDir: saves });
      const { fails, requests } = await points[point]!(f, e, held);
      await until(() => f.completions.length === requests && f.busy() === 1, "the backend to work on the request");
      await f.kill();
      const err = await rejection(fails);
      expect(err.code).toBe(ErrorCode.UNAVAILABLE);
      expect(err.retryable).toBe(true);
      expect(e.backends()[0]!.healthy).toBe(false);
      expect((await rejection(e.acquire())).message).toMatch(/every llama-server backend is down/);
    },
  );
});

describe("llama-server engine: wrong backends are typed errors", () => {
  it("a backend that is down: UNAVAILABLE naming it", async () => {
    const f = await fake();
    await f.kill();
    const err = await rejection(LlamaServerEngine.connect({ backends: [f.url] }));
    expect(err.code).toBe(ErrorCode.UNAVAILABLE);
    expect(err.message).toContain(`${f.url} is unreachable`);
  });

  it("a URL that is not a llama-server: INVALID_ARGUMENT", async () => {
    const f = await fake();
    const err = await rejection(LlamaServerEngine.connect({ backends: [`${f.url}/v1`] }));
    expect(err.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(err.message).toMatch(/is not a llama-server: GET \/health answered 404/);
    expect((await rejection(LlamaServerEngine.connect({ backends: ["localhost:8081"] }))).message).toMatch(/http/);
  });

  it("a backend serving another model than the GGUF: MODEL_MISMATCH", async () => {
    const other = describeModel(small);
    const f = await fake({ model: { ...model, nParams: other.parameters, nEmbd: other.embedding } });
    const err = await rejection(LlamaServerEngine.connect({ backends: [f.url] }));
    expect(err.code).toBe(ErrorCode.MODEL_MISMATCH);
    expect(err.message).toMatch(/serves another model than .*tiny\.gguf \(n_params/);
  });

  it("a backend with the same shape but another vocabulary: MODEL_MISMATCH", async () => {
    const f = await fake({ model: { ...model, tokenize: (t) => model.tokenize(t).reverse() } });
    const err = await rejection(LlamaServerEngine.connect({ backends: [f.url] }));
    expect(err.code).toBe(ErrorCode.MODEL_MISMATCH);
    expect(err.message).toMatch(/tokenizes differently/);
  });

  it("no GGUF this machine can read: INVALID_ARGUMENT asking for --model", async () => {
    const f = await fake({ model: { ...model, modelPath: "/models/elsewhere.gguf" } });
    const err = await rejection(LlamaServerEngine.connect({ backends: [f.url] }));
    expect(err.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(err.message).toMatch(/--model/);
  });
});

describe("llama-server engine: KV by slot save", () => {
  it("converts llama-server's packed token record into a plain sequence image, and back", () => {
    const plain = Buffer.alloc(12 + 4 * 3 + 5);
    plain.writeUInt32LE(0x67677371, 0);
    plain.writeUInt32LE(3, 4);
    plain.writeUInt32LE(3, 8);
    for (const [i, t] of [1, 42, 7].entries()) plain.writeInt32LE(t, 12 + 4 * i);
    plain.write("state", 24);
    const server = toServerImage(new Uint8Array(plain));
    expect(Array.from(readSeqStateHeader(server).tokens)).toEqual([-1, 1, 3, 1, 42, 7, 0]);
    expect(Buffer.from(toSequenceImage(server)).equals(plain)).toBe(true);
    expect(toSequenceImage(new Uint8Array(plain))).toEqual(new Uint8Array(plain));
    expect(() => toSequenceImage(new Uint8Array(8))).toThrow(/not a llama sequence-state image/);
  });

  it.each([
    ["", []],
    // The export brings the slot to prompt + 2 answer tokens with a one-token request; that token is partial.
    [" when the one token that brings the slot there ends inside a character", [2]],
  ])("exports the evaluated tokens' state from the backend's slot%s, then decodes on unchanged", async (_, partial) => {
    const saves = mkdtempSync(join(dir, "slots-"));
    const held = new Set<number>();
    const f = await fake({ slotSavePath: saves, holdBack: held });
    const e = await connect([f], { slotSaveDir: saves });
    const prompt = e.tokenize("the quick brown fox");
    for (const i of partial) held.add(prompt.length + i);
    const slot = await e.acquire();
    await slot.prefill(prompt);
    const gen = slot.generate({}, 8);
    const out: number[] = [];
    for (let i = 0; i < 3; i++) out.push((await gen.next()).value as number);
    const image = await slot.exportState();
    expect(Array.from(readSeqStateHeader(image).tokens)).toEqual([...prompt, ...out.slice(0, -1)]);
    for await (const t of gen) out.push(t);
    await slot.release();
    expect(out).toEqual(f.answer(prompt, 8));
    expect(readdirSync(saves)).toEqual([]); // the slot file is read once and removed
  });

  it("refuses a KV export without a shared --slot-save-path: UNSUPPORTED_FEATURE", async () => {
    const e = await connect([await fake()]);
    expect(e.exportsKv).toBe(false); // so the cloud offers no KV format and refuses KV in Accepted
    const slot = await e.acquire();
    await slot.prefill(e.tokenize("the dog"));
    expect((await rejection(slot.exportState())).code).toBe(ErrorCode.UNSUPPORTED_FEATURE);
    await slot.release();
  });
});
