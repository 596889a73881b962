/**
 * `pdd device serve` over raw HTTP, with a local-only device: the routes,
 * the guard (Host, Origin, CORS, API key, Content-Type, body size), the
 * context checks, the bounded queue and the OpenAI error shape of every refusal.
 */
import { request } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi, type OpenAiServer, type ServeOptions } from "./openai.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-openai-http-"));
const model = join(dir, "tiny.gguf");
let engine: Engine;
let device: PdDevice;
let api: OpenAiServer;
const logLines: string[] = [];
const servers: OpenAiServer[] = [];

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  // A 256-position context, so prompts past it are small.
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1, contextSize: 256 });
  device = await PdDevice.create({ engine });
  api = await serveOpenAi(device, { log: (l) => logLines.push(l) });
});
afterAll(async () => {
  for (const s of [api, ...servers]) await s.close();
  await device.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

async function serve(options: ServeOptions): Promise<OpenAiServer> {
  const s = await serveOpenAi(device, options);
  servers.push(s);
  return s;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: { error?: { message: string; type: string; param: string | null; code: string | null } } & Record<
    string,
    unknown
  >;
}

/** One raw request (fetch cannot set Host or Origin as a browser sends them). */
function http(
  url: string,
  opts: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const u = new URL(url);
  const body =
    opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
  const headers = { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers };
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: opts.method ?? (body ? "POST" : "GET"), headers },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => {
          let json = {};
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: json as Reply["json"] });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const base = () => api.url.replace(/\/v1$/, "");
const completion = (extra: Record<string, unknown> = {}) => ({ prompt: "The fox.", max_tokens: 4, ...extra });

/** An OpenAI error body: {error: {message, type, param, code}}. */
function expectError(r: Reply, status: number, code: string, param: string | null = null): void {
  expect(r.status).toBe(status);
  expect(r.headers["content-type"]).toBe("application/json");
  expect(Object.keys(r.json.error ?? {}).sort()).toEqual(["code", "message", "param", "type"]);
  expect(r.json.error!.code).toBe(code);
  expect(r.json.error!.param).toBe(param);
}

describe("routes", () => {
  it("/health is 503 while the model loads and 200 once it is ready", async () => {
    let load!: (d: PdDevice) => void;
    const s = await serveOpenAi(new Promise<PdDevice>((r) => (load = r)));
    servers.push(s);
    const root = s.url.replace(/\/v1$/, "");
    expectError(await http(`${root}/health`), 503, "loading");
    expectError(await http(`${s.url}/completions`, { body: completion() }), 503, "loading");
    load(device);
    await s.ready;
    expect((await http(`${root}/health`)).json).toEqual({ status: "ok" });
  });

  it("/v1/models and /v1/models/{id}: the alias, and 404 model_not_found for another id or model", async () => {
    const s = await serve({ alias: "my-model" });
    const list = await http(`${s.url}/models`);
    expect((list.json.data as { id: string }[]).map((m) => m.id)).toEqual(["my-model"]);
    expect((await http(`${s.url}/models/my-model`)).json.id).toBe("my-model");
    expectError(await http(`${s.url}/models/pdd-device`), 404, "model_not_found", "model");
    expectError(
      await http(`${s.url}/completions`, { body: completion({ model: "pdd-device" }) }),
      404,
      "model_not_found",
      "model",
    );
    expect((await http(`${s.url}/completions`, { body: completion({ model: "my-model" }) })).status).toBe(200);
  });

  it("a wrong method is 405 with Allow; an unknown path is 404; both in OpenAI's shape", async () => {
    const r = await http(`${api.url}/chat/completions`);
    expectError(r, 405, "method_not_allowed");
    expect(r.headers.allow).toBe("POST, OPTIONS");
    expectError(await http(`${base()}/v2/anything`), 404, "unknown_url");
  });

  it("/metrics is Prometheus text that counts requests and answer tokens by source", async () => {
    await http(`${api.url}/completions`, { body: completion() });
    const r = await http(`${base()}/metrics`);
    expect(r.headers["content-type"]).toMatch(/^text\/plain/);
    expect(r.body).toMatch(/pdd_serve_requests_total\{route="\/v1\/completions",status="200"\} [1-9]/);
    expect(r.body).toMatch(/pdd_serve_tokens_total\{source="device"\} [1-9]/);
    expect(r.body).toMatch(/pdd_serve_ttft_seconds_count [1-9]/);
  });

  it("writes one JSON log line per request, refused ones included", async () => {
    const before = logLines.length;
    await http(`${api.url}/completions`, { body: completion() });
    await http(`${api.url}/completions`, { body: completion({ n: 3 }) });
    const lines = logLines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.path, l.status])).toEqual([
      ["/v1/completions", 200],
      ["/v1/completions", 400],
    ]);
    expect(lines[0]).toMatchObject({ method: "POST", completionTokens: 4, outcome: "done", finish: "length" });
  });
});

describe("requests", () => {
  it("a non-streamed answer is not paced; a streamed one is paced at streamTpotMs", async () => {
    const s = await serve({ streamTpotMs: 25 });
    const generate = vi.spyOn(device, "generate");
    try {
      await http(`${s.url}/completions`, { body: completion() });
      await http(`${s.url}/completions`, { body: completion({ stream: true }) });
      expect(generate.mock.calls.map((c) => c[1]?.targetTpotMs)).toEqual([0, 25]);
    } finally {
      generate.mockRestore();
    }
  });

  it("sampling parameters reach the device, and a seeded sampled answer repeats", async () => {
    const client = new OpenAI({ baseURL: api.url, apiKey: "unused", maxRetries: 0 });
    const generate = vi.spyOn(device, "generate");
    const ask = async () =>
      (
        await client.chat.completions.create({
          model: "pdd-device",
          messages: [{ role: "user", content: "Say something." }],
          max_tokens: 16,
          temperature: 1.5,
          top_p: 0.9,
          seed: 7,
        })
      ).choices[0]?.message.content;
    try {
      expect(await ask()).toBe(await ask());
      expect(generate.mock.calls[0]?.[1]?.sampling).toEqual({ temperature: 1.5, topP: 0.9, seed: 7 });
    } finally {
      generate.mockRestore();
    }
  });

  it("refuses what it cannot honour with a 400 naming the parameter, and an unknown parameter as OpenAI does", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ n: 2 }, "n"],
      [{ echo: true }, "echo"],
      [{ logprobs: 6 }, "logprobs"],
      [{ best_of: 3 }, "best_of"],
      [{ presence_penalty: 1 }, "presence_penalty"],
      [{ logit_bias: { "5": 1 } }, "logit_bias"],
      [{ suffix: "x" }, "suffix"],
      [{ prompt: ["a", "b"] }, "prompt"],
      [{ stop: "" }, "stop"],
    ];
    for (const [extra, param] of cases) {
      const r = await http(`${api.url}/completions`, { body: completion(extra) });
      expect(r.status, param).toBe(400);
      expect(r.json.error!.param).toBe(param);
    }
    expectError(
      await http(`${api.url}/completions`, { body: completion({ wibble: 1 }) }),
      400,
      "unknown_parameter",
      "wibble",
    );
    const image = { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] };
    const r = await http(`${api.url}/chat/completions`, { body: image });
    expect(r.json.error!.param).toBe("messages[0].content[0].type");
    // The defaults of refused parameters change nothing, so they are served.
    const ok = await http(`${api.url}/completions`, {
      body: completion({ n: 1, echo: false, presence_penalty: 0, frequency_penalty: 0, logprobs: null }),
    });
    expect(ok.status).toBe(200);
  });

  it("a prompt past the context is a 400 context_length_exceeded; generation stops at the context with length", async () => {
    const words = (n: number) => "fox ".repeat(n);
    expectError(
      await http(`${api.url}/completions`, { body: completion({ prompt: words(600) }) }),
      400,
      "context_length_exceeded",
      "prompt",
    );
    const huge = await http(`${api.url}/completions`, { body: completion({ prompt: words(2000) }) });
    expectError(huge, 400, "context_length_exceeded", "prompt");
    expect(huge.json.error!.message).toMatch(/not tokenized/);
    const prompt = `${words(40)}.`;
    const left = 256 - engine.tokenize(prompt).length;
    const r = await http(`${api.url}/completions`, { body: { prompt, max_tokens: 1000 } });
    expect(r.status).toBe(200);
    const body = r.json as unknown as { usage: { completion_tokens: number }; choices: { finish_reason: string }[] };
    expect(body.usage.completion_tokens).toBe(left);
    expect(body.choices[0]!.finish_reason).toBe("length");
  });

  it("a body over the limit is 413; a body that is not JSON is 400; a non-JSON Content-Type is 415", async () => {
    const s = await serve({ maxBodyBytes: 1024 });
    expectError(
      await http(`${s.url}/completions`, { body: completion({ prompt: "x".repeat(2000) }) }),
      413,
      "request_too_large",
    );
    expectError(await http(`${s.url}/completions`, { body: "{nope" }), 400, "invalid_json");
    const plain = await http(`${s.url}/completions`, {
      body: JSON.stringify(completion()),
      headers: { "content-type": "text/plain" },
    });
    expectError(plain, 415, "unsupported_media_type");
  });

  it("a full queue answers 503 with Retry-After at once", async () => {
    const s = await serve({ parallel: 1, queue: 0, streamTpotMs: 20 });
    const u = new URL(`${s.url}/completions`);
    const body = JSON.stringify(completion({ max_tokens: 200, stream: true }));
    const busy = request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    const ended = new Promise((r) => s.events.on("request", (l) => l.outcome === "cancelled" && r(l)));
    await new Promise<void>((resolve) => {
      busy.on("response", (res) => res.once("data", () => resolve()));
      busy.end(body);
    });
    const r = await http(`${s.url}/completions`, { body: completion() });
    expectError(r, 503, "server_busy");
    expect(r.headers["retry-after"]).toBe("1");
    busy.destroy();
    await ended;
  });
});

describe("who may use it", () => {
  it("a foreign Host is refused (DNS rebinding); loopback names and IP literals are served", async () => {
    const port = new URL(api.url).port;
    expectError(
      await http(`${base()}/v1/models`, { headers: { host: `evil.example:${port}` } }),
      403,
      "host_not_allowed",
    );
    expect((await http(`${base()}/v1/models`, { headers: { host: `localhost:${port}` } })).status).toBe(200);
    expect((await http(`${base()}/v1/models`, { headers: { host: `127.0.0.1:${port}` } })).status).toBe(200);
    const named = await serve({ allowedHosts: [".lan.example"] });
    const root = named.url.replace(/\/v1$/, "");
    expect((await http(`${root}/v1/models`, { headers: { host: "box.lan.example" } })).status).toBe(200);
    expectError(await http(`${root}/v1/models`, { headers: { host: "lan.example.evil" } }), 403, "host_not_allowed");
  });

  it("a foreign Origin is refused, its own is served; a text/plain POST from a page never is", async () => {
    const port = new URL(api.url).port;
    const foreign = await http(`${api.url}/completions`, {
      body: JSON.stringify(completion()),
      headers: { origin: "http://evil.example", "content-type": "text/plain" },
    });
    expectError(foreign, 403, "origin_not_allowed");
    const own = await http(`${api.url}/completions`, {
      body: completion(),
      headers: { origin: `http://127.0.0.1:${port}` },
    });
    expect(own.status).toBe(200);
  });

  it("--cors-origin: a listed origin gets its preflight and the CORS headers, another is refused", async () => {
    const s = await serve({ corsOrigins: ["https://app.example"] });
    const pre = await http(`${s.url}/chat/completions`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers["access-control-allow-origin"]).toBe("https://app.example");
    expect(pre.headers["access-control-allow-methods"]).toMatch(/POST/);
    expect(pre.headers["access-control-allow-headers"]).toBe("authorization, content-type");
    const r = await http(`${s.url}/completions`, { body: completion(), headers: { origin: "https://app.example" } });
    expect(r.status).toBe(200);
    expect(r.headers["access-control-allow-origin"]).toBe("https://app.example");
    expectError(
      await http(`${s.url}/models`, { method: "OPTIONS", headers: { origin: "https://other.example" } }),
      403,
      "origin_not_allowed",
    );
  });

  it("--api-key: every route but /health needs Authorization: Bearer KEY", async () => {
    const s = await serve({ apiKey: "the-key-123" });
    const root = s.url.replace(/\/v1$/, "");
    expectError(await http(`${s.url}/completions`, { body: completion() }), 401, "invalid_api_key");
    expectError(
      await http(`${s.url}/models`, { headers: { authorization: "Bearer the-key-124" } }),
      401,
      "invalid_api_key",
    );
    expectError(await http(`${root}/metrics`), 401, "invalid_api_key");
    expect((await http(`${root}/health`)).status).toBe(200);
    const ok = await http(`${s.url}/completions`, {
      body: completion(),
      headers: { authorization: "Bearer the-key-123" },
    });
    expect(ok.status).toBe(200);
  });
});
