/** The OpenAI-compatible endpoint, driven by a plain fetch SSE client and by the openai package. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi, type OpenAiServer } from "./openai.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-openai-"));
const model = join(dir, "tiny.gguf");
let engine: Engine;
let cloud: CloudPeer;
let device: PdDevice;
let api: OpenAiServer;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1 });
  cloud = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
  device = await PdDevice.create({ engine, cloud: cloud.urls.ws, targetTpotMs: 0 });
  api = await serveOpenAi(device);
});
afterAll(async () => {
  await api.close();
  await device.close();
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Reads an SSE response into its data payloads. */
async function sse(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((e) => e.startsWith("data: "))
    .map((e) => e.slice(6));
}

describe("OpenAI-compatible endpoint", () => {
  it("streams a chat completion over SSE with usage last, and the text equals the non-streamed one", async () => {
    const body = {
      model: "pdd-device",
      messages: [{ role: "user", content: "Tell me about the fox." }],
      max_tokens: 30,
    };
    const plain = (await (
      await fetch(`${api.url}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      })
    ).json()) as {
      choices: { message: { content: string }; finish_reason: string }[];
      usage: { completion_tokens: number };
      pdd: { mode: string };
    };
    expect(plain.choices[0]!.finish_reason).toBe("length");
    expect(plain.usage.completion_tokens).toBe(30);
    expect(plain.pdd.mode).toBe("pd");
    const res = await fetch(`${api.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const events = await sse(res);
    expect(events[events.length - 1]).toBe("[DONE]");
    const chunks = events.slice(0, -1).map(
      (e) =>
        JSON.parse(e) as {
          choices: { delta: { content?: string; role?: string }; finish_reason: string | null }[];
          usage?: { completion_tokens: number };
        },
    );
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    const streamed = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("");
    expect(streamed).toBe(plain.choices[0]!.message.content);
    const usage = chunks[chunks.length - 1]!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage!.completion_tokens).toBe(30);
  });

  it("serves /v1/completions and refuses a bad body with a 400 and an OpenAI error", async () => {
    const ok = (await (
      await fetch(`${api.url}/completions`, {
        method: "POST",
        body: JSON.stringify({ prompt: "Go on.", max_tokens: 8 }),
      })
    ).json()) as { object: string; choices: { text: string }[] };
    expect(ok.object).toBe("text_completion");
    expect(ok.choices[0]!.text.length).toBeGreaterThan(0);
    const bad = await fetch(`${api.url}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: "nope" }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/messages/);
    expect((await fetch(`${api.url}/chat/completions`, { method: "POST", body: "{not json" })).status).toBe(400);
  });

  it("works unchanged with the official openai client, streaming and not", async () => {
    const client = new OpenAI({ baseURL: api.url, apiKey: "unused" });
    const c = await client.chat.completions.create({
      model: "pdd-device",
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 12,
    });
    expect(c.choices[0]!.message.content!.length).toBeGreaterThan(0);
    const stream = await client.chat.completions.create({
      model: "pdd-device",
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 12,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: number | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage.completion_tokens;
    }
    expect(text).toBe(c.choices[0]!.message.content);
    expect(usage).toBe(12);
  });
});
