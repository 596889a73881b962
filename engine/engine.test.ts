import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import { createModel, Engine, fingerprints, PRESETS, SKELETON_TEXT, type TokenLogprob } from "./index.js";
import { greedy } from "./test/greedy.js";
import { MUTATIONS } from "../hostile/kv/mutations.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-engine-"));
const tiny = join(dir, "tiny.gguf");
const tinyB = join(dir, "tiny-b.gguf");
let engine: Engine;

beforeAll(async () => {
  createModel(tiny, PRESETS.tiny);
  createModel(tinyB, PRESETS["tiny-b"]);
  engine = await Engine.load({ modelPath: tiny, sequences: 4, threads: 1 });
});
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const text = (ids: number[]) => Buffer.from(engine.bytes(ids)).toString("utf8");

const decode = (prompt: number[], n: number) => greedy(engine, prompt, n);

describe("generated models", () => {
  it("are byte-for-byte deterministic, and fingerprinted by content, not path", () => {
    const again = join(dir, "again.gguf");
    createModel(again, PRESETS.tiny);
    const copy = join(dir, "renamed-copy.gguf");
    copyFileSync(tiny, copy);
    const a = fingerprints(tiny);
    expect(Buffer.from(fingerprints(again).model).equals(Buffer.from(a.model))).toBe(true);
    expect(Buffer.from(fingerprints(copy).model).equals(Buffer.from(a.model))).toBe(true);
    const b = fingerprints(tinyB);
    expect(Buffer.from(b.model).equals(Buffer.from(a.model))).toBe(false);
    expect(Buffer.from(b.tokenizer).equals(Buffer.from(a.tokenizer))).toBe(false);
    expect(a.model.length).toBe(32);
  });

  it("spell the skeleton sentence under greedy decoding, multi-byte characters split across byte tokens", async () => {
    const out = await decode(engine.tokenize("Go on."), 24);
    expect(text(out)).toBe(SKELETON_TEXT);
    const pieces = out.map((t) => engine.pieces[t]!);
    expect(pieces.some((p) => p.length === 1 && p[0]! >= 0x80)).toBe(true); // a lone UTF-8 byte
  });

  it("yield the end-of-generation token when the model produces it (tiny-eos ends its sentence with EOS)", async () => {
    const path = join(dir, "tiny-eos.gguf");
    createModel(path, PRESETS["tiny-eos"]);
    const eos = await Engine.load({ modelPath: path, sequences: 1, threads: 1 });
    try {
      const out = await greedy(eos, eos.tokenize("The quick brown fox"), 32);
      const at = out.findIndex((t) => eos.isEndOfGeneration(t));
      expect(at).toBeGreaterThan(0);
      expect(Buffer.from(eos.bytes(out.slice(0, at))).toString("utf8")).toBe(
        SKELETON_TEXT.slice(" The quick brown fox".length),
      );
    } finally {
      await eos.close();
    }
  });
});

describe("bad model files", () => {
  it.each([
    ["random bytes", Buffer.from("not a model at all, just text")],
    ["a truncated GGUF", Buffer.from([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 5])],
    ["GGUF v9", Buffer.concat([Buffer.from("GGUF"), Buffer.from([9, 0, 0, 0]), Buffer.alloc(16)])],
  ])("refuses %s with INVALID_ARGUMENT, without crashing", async (_label, bytes) => {
    const p = join(dir, "bad.gguf");
    writeFileSync(p, bytes);
    const err = await Engine.load({ modelPath: p }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it("refuses a missing file with INVALID_ARGUMENT", async () => {
    await expect(Engine.load({ modelPath: join(dir, "nope.gguf") })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
  });
});

describe("the P/D-Device invariants of the engine", () => {
  const prompts = [
    "Tell me about the fox.",
    "What did the owls do? Answer plainly, please",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z.",
  ];

  it("prefilling prompt + k received tokens continues exactly like decoding throughout", async () => {
    for (const p of prompts) {
      const prompt = engine.tokenize(p);
      const full = await decode(prompt, 40);
      for (const k of [1, 2, 7, 19, 33]) {
        const rest = await decode([...prompt, ...full.slice(0, k)], 40 - k);
        if (JSON.stringify(rest) !== JSON.stringify(full.slice(k))) {
          // A divergence must be a numeric near-tie between batched and
          // one-by-one evaluation: report the log-probability gap of the two
          // candidates at the first divergent index, never loosen the check.
          const i = rest.findIndex((t, j) => t !== full[k + j]);
          const context = [...prompt, ...full.slice(0, k + i)];
          const logp = async (t: number) => {
            const s = await engine.acquire();
            const r = await s.prefill([...context, t], { surprisal: true });
            await s.release();
            return -r.surprisal![context.length]!;
          };
          const gap = Math.abs((await logp(full[k + i]!)) - (await logp(rest[i]!)));
          throw new Error(
            `diverged for ${JSON.stringify(p)} at k=${k}, answer index ${k + i}: log-probability gap ${gap.toExponential(2)}`,
          );
        }
      }
    }
  });

  it("an exported KV state continues exactly, and is refused for another model", async () => {
    const prompt = engine.tokenize(prompts[1]!);
    const full = await decode(prompt, 30);
    const cloud = await engine.acquire();
    await cloud.prefill(prompt);
    const gen = cloud.generate({}, 1);
    const first = (await gen.next()).value as number;
    await gen.return(undefined);
    const image = await cloud.exportState();
    await cloud.release();
    expect(first).toBe(full[0]);

    const device = await engine.acquire();
    await expect(device.importState(image, fingerprints(tinyB).model)).rejects.toMatchObject({
      code: ErrorCode.MODEL_MISMATCH,
    });
    await device.prefill(prompt.slice(0, 5)); // a partial local prefill that the image replaces
    await device.importState(image, engine.info.modelFingerprint);
    expect(device.evaluated).toBe(prompt.length);
    await device.prefill(full.slice(0, 6));
    const rest: number[] = [];
    for await (const t of device.generate({}, 24)) rest.push(t);
    await device.release();
    expect(rest).toEqual(full.slice(6));
  });

  // Issue 13 item 4: each of these loaded (or allocated for its count) and crashed or bloated the next evaluation.
  it.each(MUTATIONS.filter((m) => !m.name.startsWith("more cells")).map((m) => [m.name, m] as const))(
    "a KV image with %s is refused before llama.cpp, and the sequence stays usable",
    async (_name, m) => {
      const prompt = engine.tokenize(prompts[1]!);
      const cloud = await engine.acquire();
      await cloud.prefill(prompt);
      for await (const _ of cloud.generate({}, 1)) break;
      const image = await cloud.exportState();
      await cloud.release();
      const device = await engine.acquire();
      try {
        await expect(
          device.importState(m.build(image, engine.contextSize), engine.info.modelFingerprint),
        ).rejects.toThrow(/KV image refused/);
        await device.importState(image, engine.info.modelFingerprint);
        expect(device.evaluated).toBe(prompt.length);
      } finally {
        await device.release();
      }
    },
  );

  it("computes per-token surprisal during prefill", async () => {
    const s = await engine.acquire();
    const prompt = engine.tokenize("The quick brown fox jumps over the lazy dog.");
    const r = await s.prefill(prompt, { surprisal: true });
    await s.release();
    expect(Number.isNaN(r.surprisal![0]!)).toBe(true);
    const rest = Array.from(r.surprisal!.slice(1));
    expect(rest.every((x) => Number.isFinite(x) && x >= 0)).toBe(true);
    // The skeleton makes "quick" after "The" far more predictable than the first word.
    expect(Math.min(...rest)).toBeLessThan(Math.max(...rest));
  });

  it("gives each decoded token's log-probability, and a prefill of the same tokens gives the same ones", async () => {
    const prompt = engine.tokenize("The quick brown fox");
    const s = await engine.acquire();
    const decoded: number[] = [];
    const lps: TokenLogprob[] = [];
    try {
      await s.prefill(prompt);
      for await (const t of s.generate({}, 8, { top: 3, each: (lp) => lps.push(lp) })) decoded.push(t);
      await s.reset();
      const scored = await s.prefill([...prompt, ...decoded], { logprobs: 3 });
      const again = scored.logprobs!.slice(prompt.length);
      expect(lps).toHaveLength(8);
      for (const [i, lp] of lps.entries()) {
        // Greedy: each token is its position's most likely, and its log-probability the top one's.
        expect(lp.top).toHaveLength(3);
        expect(lp.top[0]!.id).toBe(decoded[i]);
        expect(lp.logprob).toBe(lp.top[0]!.logprob);
        expect(lp.logprob).toBeLessThanOrEqual(0);
        expect(again[i]!.top.map((a) => a.id)).toEqual(lp.top.map((a) => a.id));
        expect(again[i]!.logprob).toBeCloseTo(lp.logprob, 3);
      }
    } finally {
      await s.release();
    }
  });

  it("decodes several sequences at once with the same results as one at a time", async () => {
    const ps = prompts.map((p) => engine.tokenize(p));
    const alone = [];
    for (const p of ps) alone.push(await decode(p, 20));
    const together = await Promise.all(ps.map((p) => decode(p, 20)));
    expect(together).toEqual(alone);
  });

  it("counts a sequence handed from a release to a waiting acquire once", async () => {
    const held = await Promise.all([1, 2, 3, 4].map(() => engine.acquire()));
    const waiter = engine.acquire();
    await held[0]!.release();
    const handed = await waiter;
    expect(engine.busy).toBe(4);
    await Promise.all([handed, ...held.slice(1)].map((s) => s.release()));
    expect(engine.busy).toBe(0);
  });
});
