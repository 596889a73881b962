/**
 * A chat's template markers reach the model as its control tokens (issue 17):
 * `pdd device serve` tokenizes the rendered chat with them, as llama-server
 * does, prefills those IDs, and sends them as a token-ID prompt to a cloud with
 * its tokenizer (PDD-REQ-002); a cloud with another tokenizer gets the text.
 * What the cloud receives is read off the wire with protobufjs.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import protobuf from "protobufjs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { createModel, Engine, PRESETS, readGgufHeader, Slot } from "../engine/index.js";
import { PROTO_FILE } from "../proto/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi, type OpenAiServer } from "./openai.js";
import { templatedPrompt } from "./prompt.js";

const DeviceFrame = protobuf.loadSync(PROTO_FILE).lookupType("pdd.v1.DeviceFrame");
type Prompt = { text?: string; tokens?: { ids: number[] } };

/** A ws relay that records the prompt of every PrefillRequest the device sends. */
async function promptTap(upstream: string): Promise<{ url: string; prompts: Prompt[]; close: () => Promise<void> }> {
  const prompts: Prompt[] = [];
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (p) => [...p][0] ?? false });
  wss.on("connection", (client) => {
    const server = new WebSocket(upstream, [client.protocol]);
    const pending: Buffer[] = [];
    server.on("open", () => {
      for (const b of pending.splice(0)) server.send(b);
    });
    client.on("message", (b: Buffer) => {
      const f = DeviceFrame.toObject(DeviceFrame.decode(b), { oneofs: true }) as { prefillRequest?: Prompt };
      if (f.prefillRequest) prompts.push(f.prefillRequest);
      if (server.readyState === WebSocket.OPEN) server.send(b);
      else pending.push(b);
    });
    server.on("message", (b: Buffer) => client.send(b));
    client.on("close", () => server.terminate());
    server.on("close", () => client.terminate());
    client.on("error", () => server.terminate());
    server.on("error", () => client.terminate());
  });
  await new Promise((r) => wss.once("listening", r));
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/pdd`,
    prompts,
    close: () => new Promise((r) => wss.close(() => r())),
  };
}

const dir = mkdtempSync(join(tmpdir(), "pdd-chat-tokens-"));
const model = join(dir, "tiny.gguf");
const otherModel = join(dir, "tiny-b.gguf");
/** The ID of `<|im_start|>` in the GGUF's own token list. */
let imStart: number;
let engine: Engine;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  createModel(otherModel, PRESETS["tiny-b"]);
  imStart = (readGgufHeader(model).metadata.get("tokenizer.ggml.tokens") as string[]).indexOf("<|im_start|>");
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1 });
});
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A device serving the OpenAI API through a tapped cloud running `cloudModel`. */
async function served(cloudModel: string) {
  const cloud = await startCloud({ model: cloudModel, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
  const tap = await promptTap(cloud.urls.ws!);
  // A device slower to prefill than the cloud (emulated), so the answer starts with the cloud's tokens.
  const device = await PdDevice.create({
    engine,
    cloud: tap.url,
    targetTpotMs: 0,
    useKv: false,
    emulate: { prefillMsPerToken: 50 },
  });
  const api: OpenAiServer = await serveOpenAi(device, { streamTpotMs: 0 });
  const client = new OpenAI({ baseURL: api.url, apiKey: "unused", maxRetries: 0 });
  const close = async () => {
    await api.close();
    await device.close();
    await tap.close();
    await cloud.close({ drainSeconds: 0 });
  };
  return { device, tap, client, close };
}

/** The tokens the device's own engine was given to prefill (the in-process cloud prefills on another). */
function devicePrefilled(spy: { mock: { calls: [readonly number[], ...unknown[]][]; contexts: unknown[] } }): number[] {
  return spy.mock.calls.flatMap(([tokens], i) => ((spy.mock.contexts[i] as Slot).engine === engine ? [...tokens] : []));
}

const messages = [{ role: "user" as const, content: "The quick brown fox" }];
const RENDERED = "<|im_start|>user\nThe quick brown fox<|im_end|>\n<|im_start|>assistant\n";

describe("a templated chat's control tokens", () => {
  it("are single token IDs in the device's prefill and in the token-ID prompt a same-tokenizer cloud receives", async () => {
    const s = await served(model);
    const prefill = vi.spyOn(Slot.prototype, "prefill");
    try {
      expect(imStart).toBeGreaterThan(0);
      const r = await s.client.chat.completions.create({ model: "pdd-device", messages, max_tokens: 12 });
      const prefilled = devicePrefilled(prefill);
      expect(prefilled.filter((t) => t === imStart)).toHaveLength(2);
      expect(s.tap.prompts).toHaveLength(1);
      const sent = s.tap.prompts[0]!;
      expect(sent.text).toBeUndefined();
      expect(sent.tokens!.ids.filter((t) => t === imStart)).toHaveLength(2);
      // Both sides hold the same prompt: the device's prefill begins with the IDs the cloud got.
      expect(prefilled.slice(0, sent.tokens!.ids.length)).toEqual(sent.tokens!.ids);
      expect(r.usage?.prompt_tokens).toBe(sent.tokens!.ids.length);
      // Greedy P/D with the cloud's tokens in it equals the device alone.
      const pdd = (r as unknown as { pdd: { mode: string; cloudTokens: number } }).pdd;
      expect(pdd.mode).toBe("pd");
      expect(pdd.cloudTokens).toBeGreaterThan(0);
      const local = await s.device.generate(templatedPrompt(engine, RENDERED), { maxTokens: 12, localOnly: true });
      expect(r.choices[0]?.message.content).toBe(local.text);
    } finally {
      prefill.mockRestore();
      await s.close();
    }
  });

  it("go to a cloud with another tokenizer as the rendered text, while the device still prefills them as IDs", async () => {
    const s = await served(otherModel);
    const prefill = vi.spyOn(Slot.prototype, "prefill");
    try {
      const r = await s.client.chat.completions.create({ model: "pdd-device", messages, max_tokens: 12 });
      expect(s.tap.prompts).toEqual([expect.objectContaining({ text: RENDERED })]);
      expect(s.tap.prompts[0]!.tokens).toBeUndefined();
      expect(devicePrefilled(prefill).filter((t) => t === imStart)).toHaveLength(2);
      expect(r.choices[0]?.message.content?.length).toBeGreaterThan(0);
    } finally {
      prefill.mockRestore();
      await s.close();
    }
  });
});
