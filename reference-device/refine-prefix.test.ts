/**
 * The device's use of a refined prompt that comes mid-prefill (issue 18):
 * with the cloud's token IDs it keeps the prompt prefix it has prefilled and
 * prefills only the kept tokens after it; with another tokenizer it knows
 * only the refined text, so it starts over on that. The refined prompt
 * arrives after the first chunk because the test makes it arrive then.
 */
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it, vi } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { RefinedPromptSchema } from "../proto/index.js";
import { LocalPipeline } from "./local-pipeline.js";
import type { RunOptions } from "./run.js";
import { scriptedClock, scriptedHost } from "./test/scripted-host.js";

const PROMPT = "The quick brown fox jumps over the lazy dog, twice over.";
const CHUNK = 4;

async function refinedMidPrefill(sameTokenizer: boolean) {
  const engine = new SimEngine({ profile: INSTANT });
  const original = engine.tokenize(PROMPT);
  const n = original.length;
  const kept = [
    { start: 0, end: 1 },
    { start: 2, end: 3 }, // inside the first chunk: already prefilled when the refined prompt comes
    { start: 6, end: 8 },
    { start: n - 3, end: n },
  ];
  const keptTokens = kept.reduce((a, s) => a + s.end - s.start, 0);
  const text = Buffer.from(engine.bytes(kept.flatMap((s) => original.slice(s.start, s.end)))).toString("utf8");
  const s = scriptedHost({ targetTpotMs: 0, sameTokenizer });
  s.cloud.grantedBudget = 4;
  const slot = await engine.acquire();
  const context: number[] = [];
  let resets = 0;
  const prefill = slot.prefill.bind(slot);
  slot.prefill = (tokens, opts) => {
    context.push(...tokens);
    // The refined prompt comes with the cloud's first token, here once the device has prefilled its first chunk.
    s.cloud.refined ??= create(RefinedPromptSchema, {
      kept,
      text,
      originalTokens: n,
      keptTokens,
      ratio: keptTokens / n,
    });
    return prefill(tokens, opts);
  };
  const reset = slot.reset.bind(slot);
  slot.reset = () => {
    resets++;
    context.length = 0;
    return reset();
  };
  const opts: RunOptions = { maxTokens: 4, targetTpotMs: 0, cloudBudget: 4, useKv: false, prefillChunk: CHUNK };
  const pipeline = new LocalPipeline(engine, PROMPT, opts, s.host);
  await pipeline.run(slot);
  await slot.release();
  return { engine, original, kept, text, context, resets, refinement: pipeline.refinement };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a refined prompt that comes mid-prefill", () => {
  it("with the cloud's token IDs: keeps the prefilled prefix and prefills only the kept tokens after it", async () => {
    const r = await refinedMidPrefill(true);
    const n = r.original.length;
    const expected = [...r.original.slice(0, CHUNK), ...r.original.slice(6, 8), ...r.original.slice(n - 3)];
    expect(r.resets).toBe(0);
    expect(r.context.slice(0, expected.length)).toEqual(expected);
    expect(r.refinement).toEqual({ used: true, originalTokens: n, keptTokens: expected.length });
  });

  it("tells the display at once when it will be ready: from what the refined prompt leaves, not the whole prompt", async () => {
    const clock = scriptedClock();
    const engine = new SimEngine({ profile: INSTANT });
    const original = engine.tokenize(PROMPT);
    const kept = [
      { start: 0, end: 1 },
      { start: 6, end: 8 },
    ];
    const s = scriptedHost({ targetTpotMs: 50, sameTokenizer: true });
    s.cloud.grantedBudget = 4;
    const opts: RunOptions = {
      maxTokens: 4,
      targetTpotMs: 50,
      cloudBudget: 4,
      useKv: false,
      prefillChunk: CHUNK,
      prefillMsPerToken: 10,
    };
    const pipeline = new LocalPipeline(engine, PROMPT, opts, s.host);
    const slot = await engine.acquire();
    const estimates: (number | undefined)[] = [];
    const prefill = slot.prefill.bind(slot);
    slot.prefill = (tokens, o) => {
      if (!s.cloud.refined) {
        // The refined prompt arrives during the first chunk, as the run reports it.
        s.cloud.refined = create(RefinedPromptSchema, {
          kept,
          text: "",
          originalTokens: original.length,
          keptTokens: 3,
        });
        pipeline.refinedArrived();
        estimates.push(pipeline.readyAt);
      }
      return prefill(tokens, o);
    };
    await pipeline.run(slot);
    await slot.release();
    // Nothing prefilled yet: the 3 kept tokens, then the cloud's 4, at 10 ms each (not the whole prompt's).
    expect(estimates).toEqual([clock.now + (3 + 4) * 10]);
  });

  it("with another tokenizer: starts over on the refined text", async () => {
    const r = await refinedMidPrefill(false);
    const tokens = r.engine.tokenize(r.text);
    expect(r.resets).toBe(1);
    expect(r.context.slice(0, tokens.length)).toEqual(tokens);
    expect(r.refinement).toEqual({ used: true, originalTokens: r.original.length, keptTokens: tokens.length });
  });
});
