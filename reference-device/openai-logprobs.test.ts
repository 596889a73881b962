/**
 * logprobs through the official `openai` client (issue 17): every shown token
 * has its log-probability and alternatives, the device's from its sampling,
 * the cloud's scored on the device after the answer (the protocol carries
 * none). Greedy answers make each token its position's most likely one, which
 * is what the assertions lean on.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createModel, Engine, PRESETS, Slot } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi, type OpenAiServer } from "./openai.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-logprobs-"));
const model = join(dir, "tiny.gguf");
let engine: Engine;
let cloud: CloudPeer;
let device: PdDevice;
let api: OpenAiServer;
let client: OpenAI;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1 });
  cloud = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
  // Slower to prefill than the cloud (emulated), so answers start with the cloud's 4 tokens and go on with the device's.
  device = await PdDevice.create({
    engine,
    cloud: cloud.urls.ws,
    targetTpotMs: 0,
    cloudBudget: 4,
    useKv: false, // the catch-up evaluates every cloud token (a KV image would cover some)
    emulate: { prefillMsPerToken: 50 },
  });
  api = await serveOpenAi(device, { streamTpotMs: 0 });
  client = new OpenAI({ baseURL: api.url, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await api.close();
  await device.close();
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const user = (content: string) => [{ role: "user" as const, content }];
type Pdd = { pdd: { cloudTokens: number; deviceTokens: number } };

/** Runs `f`, counting the device's prefills that score the prompt again for log-probabilities (cloud-logprobs.ts). */
async function scoringPasses<T>(f: () => Promise<T>): Promise<{ result: T; passes: number }> {
  const prefill = vi.spyOn(Slot.prototype, "prefill");
  try {
    const result = await f();
    const passes = prefill.mock.calls.filter(
      ([tokens, opts], i) =>
        (prefill.mock.contexts[i] as Slot).engine === engine && opts?.logprobs !== undefined && tokens.length > 4,
    ).length;
    return { result, passes };
  } finally {
    prefill.mockRestore();
  }
}

describe("logprobs", () => {
  it("chat: every token of a greedy P/D answer, the cloud's and the device's, is its position's most likely", async () => {
    const { result: r, passes } = await scoringPasses(() =>
      client.chat.completions.create({
        model: "pdd-device",
        messages: user("The quick brown fox"),
        max_tokens: 16,
        logprobs: true,
        top_logprobs: 3,
      }),
    );
    // The cloud's tokens got theirs from the catch-up, which evaluated them anyway: no second prefill.
    expect(passes).toBe(0);
    const { pdd } = r as unknown as Pdd;
    expect(pdd.cloudTokens).toBeGreaterThan(0);
    expect(pdd.deviceTokens).toBeGreaterThan(0);
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(16);
    // A character spelled in byte tokens: each token alone is U+FFFD, their bytes together the character.
    const bytes = Buffer.concat(content.map((t) => Buffer.from(t.bytes!)));
    expect(bytes.toString("utf8")).toBe(r.choices[0]!.message.content);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0]!.token).toBe(t.token);
      expect(t.logprob).toBe(t.top_logprobs[0]!.logprob);
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs[1]!.logprob).toBeLessThanOrEqual(t.top_logprobs[0]!.logprob);
    }
  });

  it("completions, streamed: the last chunk carries the answer's tokens, cut where the stop string cut the text", async () => {
    const full = await client.completions.create({ model: "pdd-device", prompt: "The fox.", max_tokens: 20 });
    const text = full.choices[0]!.text;
    // A whole token: the one that completes the stop string starts at the cut, and is not in the logprobs.
    const stop = " fox";
    expect(text).toContain(stop);
    const stream = await client.completions.create({
      model: "pdd-device",
      prompt: "The fox.",
      max_tokens: 20,
      stop,
      logprobs: 2,
      stream: true,
    });
    let streamed = "";
    const chunks: OpenAI.Completions.Completion["choices"][number]["logprobs"][] = [];
    for await (const c of stream) {
      streamed += c.choices[0]?.text ?? "";
      chunks.push(c.choices[0]?.logprobs ?? null);
    }
    expect(streamed).toBe(text.slice(0, text.indexOf(stop)));
    const lp = chunks.at(-1)!;
    expect(chunks.slice(0, -1).every((c) => c === null)).toBe(true);
    const tokens = lp.tokens!;
    const joined = tokens.join("");
    expect(joined.startsWith(streamed)).toBe(true);
    expect(joined.length - tokens.at(-1)!.length).toBeLessThan(streamed.length);
    expect(lp.token_logprobs!.every((x) => typeof x === "number" && x <= 0)).toBe(true);
    expect(lp.top_logprobs!.every((m, i) => Object.keys(m).length === 2 && tokens[i]! in m)).toBe(true);
    expect(lp.text_offset).toEqual(tokens.map((_, i) => tokens.slice(0, i).join("").length));
  });

  it("an answer the cloud's tokens made whole is scored on the device after it", async () => {
    const { result: r, passes } = await scoringPasses(() =>
      client.chat.completions.create({
        model: "pdd-device",
        messages: user("The quick brown fox"),
        max_tokens: 3,
        logprobs: true,
      }),
    );
    expect((r as unknown as Pdd).pdd).toMatchObject({ cloudTokens: 3, deviceTokens: 0 });
    expect(passes).toBe(1);
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(3);
    expect(content.every((t) => typeof t.logprob === "number" && t.logprob <= 0 && t.top_logprobs.length === 0)).toBe(
      true,
    );
  });

  it("without logprobs, choices carry logprobs: null", async () => {
    const r = await client.chat.completions.create({ model: "pdd-device", messages: user("Hi"), max_tokens: 3 });
    expect(r.choices[0]!.logprobs).toBeNull();
  });
});
