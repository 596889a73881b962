/**
 * A client that goes away mid-answer: its generation stops, the cloud request
 * is cancelled, and the device's sequence is freed. The device is slowed
 * (emulated prefill) so the cloud is still streaming when the client leaves.
 */
import { request } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi, type OpenAiServer, type RequestLog } from "./openai.js";
import { promptOf } from "./test/prompt.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-openai-cancel-"));
const model = join(dir, "tiny.gguf");
let engine: Engine;
let cloud: CloudPeer;
let device: PdDevice;
let api: OpenAiServer;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1 });
  cloud = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
  // 20 ms per prefilled token in chunks of 8: the device needs seconds for the prompt, so the cloud keeps the request.
  device = await PdDevice.create({
    engine,
    cloud: cloud.urls.ws,
    useKv: false,
    cloudBudget: 256,
    prefillChunk: 8,
    emulate: { prefillMsPerToken: 20 },
  });
  api = await serveOpenAi(device, { streamTpotMs: 20 });
});
afterAll(async () => {
  await api.close();
  await device.close();
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const counter = async (
  c: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> },
  label?: string,
) =>
  (await c.get()).values
    .filter((v) => label === undefined || v.labels.reason === label)
    .reduce((a, v) => a + v.value, 0);

it("a client gone mid-stream: the generation stops, the cloud request is cancelled, the sequence is freed", async () => {
  const cancelsBefore = await counter(cloud.metrics.sequencesFreed, "cancel");
  const logged = new Promise<RequestLog>((resolve) => api.events.on("request", (l) => resolve(l)));
  const u = new URL(`${api.url}/completions`);
  const body = JSON.stringify({ prompt: promptOf(engine, 400), max_tokens: 200, stream: true });
  const req = request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  // The first token shown (the cloud's: the device is still prefilling), then the client leaves.
  await new Promise<void>((resolve) => {
    req.on("response", (res) => res.on("data", (d: Buffer) => d.toString().includes('"text"') && resolve()));
    req.end(body);
  });
  expect(await counter(cloud.metrics.activeSequences)).toBe(1);
  req.destroy();
  const log = await logged;
  // Generation stopped: the request ended as cancelled, long before its 200 tokens.
  expect(log.outcome).toBe("cancelled");
  expect(log.completionTokens).toBeLessThan(200);
  expect(log.deviceTokens).toBe(0);
  // The sequence is freed by the time the request has ended.
  expect(device.engine.busy).toBe(0);
  // The cloud was told: its sequence is freed by a Cancel (its metrics update when the frame arrives).
  await vi.waitFor(async () => expect(await counter(cloud.metrics.sequencesFreed, "cancel")).toBe(cancelsBefore + 1), {
    timeout: 10_000,
    interval: 20,
  });
  expect(await counter(cloud.metrics.activeSequences)).toBe(0);
});
