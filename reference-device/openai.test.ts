/**
 * `pdd device serve` through the official `openai` npm client (7.x): chat and
 * completions, streamed and not, stop, max_tokens, refused parameters (seed: openai-http.test.ts),
 * 4 concurrent requests and an abort mid-stream, against a real cloud.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi, type OpenAiServer, type RequestLog } from "./openai.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-openai-"));
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
  device = await PdDevice.create({ engine, cloud: cloud.urls.ws, targetTpotMs: 0 });
  // Streams unpaced too, so the matrix runs at compute speed.
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

async function streamedChat(params: Omit<OpenAI.ChatCompletionCreateParamsStreaming, "stream" | "model">) {
  const stream = await client.chat.completions.create({ ...params, model: "pdd-device", stream: true });
  let text = "";
  let finish: string | null = null;
  let usage: number | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usage = chunk.usage.completion_tokens;
  }
  return { text, finish, usage };
}

describe("the official openai client against pdd device serve", () => {
  it("chat, streamed and not: the same greedy text, finish_reason length at max_tokens, usage last, the pdd report", async () => {
    const plain = await client.chat.completions.create({
      model: "pdd-device",
      messages: user("Hello"),
      max_tokens: 12,
    });
    expect(plain.choices[0]!.finish_reason).toBe("length");
    expect(plain.usage!.completion_tokens).toBe(12);
    expect((plain as unknown as { pdd: { mode: string } }).pdd.mode).toBe("pd");
    const streamed = await streamedChat({
      messages: user("Hello"),
      max_tokens: 12,
      stream_options: { include_usage: true },
    });
    expect(streamed.text).toBe(plain.choices[0]!.message.content);
    expect(streamed.finish).toBe("length");
    expect(streamed.usage).toBe(12);
  });

  it("completions, streamed and not, give the same text", async () => {
    const plain = await client.completions.create({ model: "pdd-device", prompt: "Go on.", max_tokens: 10 });
    const stream = await client.completions.create({
      model: "pdd-device",
      prompt: "Go on.",
      max_tokens: 10,
      stream: true,
    });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.text ?? "";
    expect(plain.object).toBe("text_completion");
    expect(text).toBe(plain.choices[0]!.text);
  });

  it("stop: the text ends before the stop string, finish_reason stop, in the stream too", async () => {
    const full = (await client.completions.create({ model: "pdd-device", prompt: "The fox.", max_tokens: 40 }))
      .choices[0]!.text;
    const stop = full.slice(12, 16);
    const expected = full.slice(0, full.indexOf(stop));
    const plain = await client.completions.create({ model: "pdd-device", prompt: "The fox.", max_tokens: 40, stop });
    expect(plain.choices[0]!.text).toBe(expected);
    expect(plain.choices[0]!.finish_reason).toBe("stop");
    expect(plain.usage!.completion_tokens).toBeLessThan(40);
    const chat = await streamedChat({ messages: user("The fox."), max_tokens: 40 });
    const chatStop = chat.text.slice(10, 13);
    const stopped = await streamedChat({ messages: user("The fox."), max_tokens: 40, stop: ["\u0000never", chatStop] });
    expect(stopped.text).toBe(chat.text.slice(0, chat.text.indexOf(chatStop)));
    expect(stopped.finish).toBe("stop");
  });

  it("parameters the device cannot honour are refused with a 400 naming them, never dropped", async () => {
    const refused = async (extra: Record<string, unknown>) => {
      const e = await client.chat.completions
        .create({ model: "pdd-device", messages: user("Hi"), max_tokens: 4, ...extra })
        .catch((x: unknown) => x);
      expect(e).toBeInstanceOf(OpenAI.BadRequestError);
      return (e as InstanceType<typeof OpenAI.BadRequestError>).param;
    };
    expect(await refused({ top_logprobs: 2 })).toBe("top_logprobs"); // without logprobs: true, as OpenAI
    expect(await refused({ n: 2 })).toBe("n");
    expect(await refused({ presence_penalty: 0.5 })).toBe("presence_penalty");
    expect(await refused({ frequency_penalty: 1 })).toBe("frequency_penalty");
    const echo = await client.completions
      .create({ model: "pdd-device", prompt: "Hi", max_tokens: 4, echo: true })
      .catch((x: unknown) => x);
    expect((echo as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("echo");
    const unknown = await client.models.retrieve("gpt-4o").catch((x: unknown) => x);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    const wrongModel = await client.chat.completions
      .create({ model: "gpt-4o", messages: user("Hi") })
      .catch((x: unknown) => x);
    expect(wrongModel).toBeInstanceOf(OpenAI.NotFoundError);
    expect((wrongModel as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
    expect((await client.models.retrieve("pdd-device")).id).toBe("pdd-device");
  });

  // 8 at once: 4 generate (the device's sequences) and 4 wait. Mixed answers once came from llama.cpp's
  // batch output reorder racing between samplings (engine/serial-sampling.ts).
  it("8 concurrent requests are all answered, each with the text it gets alone", async () => {
    const prompts = ["One.", "Two.", "Three.", "Four.", "The fox.", "Five owls", "Six, then seven:", "Eight"];
    const alone: string[] = [];
    for (const p of prompts)
      alone.push(
        (await client.completions.create({ model: "pdd-device", prompt: p, max_tokens: 20 })).choices[0]!.text,
      );
    const together = await Promise.all(
      prompts.map((p) => client.completions.create({ model: "pdd-device", prompt: p, max_tokens: 20 })),
    );
    expect(together.map((c) => c.choices[0]!.text)).toEqual(alone);
  });

  it("an abort mid-stream ends the request on the server as cancelled, with fewer tokens than asked", async () => {
    const logged = new Promise<RequestLog>((resolve) =>
      api.events.on("request", (l) => l.outcome === "cancelled" && resolve(l)),
    );
    const stream = await client.chat.completions.create({
      model: "pdd-device",
      messages: user("Tell me everything."),
      max_tokens: 4000,
      stream: true,
    });
    for await (const _ of stream) {
      stream.controller.abort();
      break;
    }
    const log = await logged;
    expect(log.completionTokens).toBeLessThan(4000);
    expect(device.engine.busy).toBe(0);
  });
});
