/**
 * The cloud on a llama-server backend (a fake one, engine/test/) that fails
 * mid-request: whatever the point, the device's answer is complete. The
 * backend dies once it has the request, or after two tokens; or a sampled
 * answer meets a held-back token, which the engine cannot have again. The
 * device's own prefill is held until the cloud has ended the request, so
 * that the device is still working when the cloud's last frames come (a
 * backend killed before its first token once gave an empty answer that the
 * device took as complete, issue 19).
 */
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Engine, ensureDefaultModel, llamaRuntime, LlamaServerEngine } from "../engine/index.js";
import { FakeLlamaServer, fakeModel, type FakeOptions } from "../engine/test/fake-llama-server.js";
import { until } from "../proto/test/until.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice, type GenerateOptions } from "./device.js";
import type { Report } from "./report.js";
import { promptOf } from "./test/prompt.js";

const model = ensureDefaultModel("tiny");
let engine: Engine;
let vocab: LlamaModel;
let prompt: string;
/** The device's answer alone. */
let local: Report;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: model, threads: 1, sequences: 1 });
  vocab = await (await llamaRuntime()).loadModel({ modelPath: model, vocabOnly: true });
  prompt = promptOf(engine, 60);
  local = await (await PdDevice.create({ engine })).generate(prompt, {
    maxTokens: 30,
    localOnly: true,
    targetTpotMs: 0,
  });
});
afterAll(async () => {
  await engine.close();
  await vocab.dispose();
});

/** The device's sequences prefill nothing until `open` resolves. */
function holdPrefill(open: Promise<void>): void {
  const acquire = engine.acquire.bind(engine);
  engine.acquire = async () => {
    const slot = await acquire();
    const prefill = slot.prefill.bind(slot);
    slot.prefill = async (...args) => {
      await open;
      return prefill(...args);
    };
    return slot;
  };
}

/**
 * A cloud on one fake backend and a device whose prefill waits until the cloud has ended the request: `during`
 * drives the backend once the device has sent its request; returns the device's report.
 */
async function answerWith(
  backendOptions: Partial<FakeOptions>,
  generate: Omit<GenerateOptions, "maxTokens"> & { useKv?: boolean },
  during: (backend: FakeLlamaServer, sent: () => Promise<number>) => Promise<void>,
): Promise<Report> {
  const backend = await FakeLlamaServer.start({
    model: fakeModel(model, (text) => vocab.tokenize(text, false) as number[]),
    ...backendOptions,
  });
  const cloudEngine = await LlamaServerEngine.connect({ backends: [backend.url] });
  const cloud = await startCloud(
    { engine: "llama-server", logLevel: "silent", listen: { ws: "127.0.0.1:0" } },
    { engine: cloudEngine },
  );
  let cloudEnded!: () => void;
  const acquire = engine.acquire;
  try {
    const device = await PdDevice.create({ engine, cloud: cloud.urls.ws, useKv: generate.useKv === true });
    holdPrefill(new Promise((r) => (cloudEnded = r))); // after the device's calibration, which prefills
    const answer = device.generate(prompt, { ...generate, maxTokens: 30 });
    await until(() => backend.completions.length > 0, "the backend to take the request");
    await during(backend, async () => (await cloud.metrics.sentTokens.get()).values[0]?.value ?? 0);
    await until(async () => (await cloud.metrics.requests.get()).values.length > 0, "the cloud to end the request");
    cloudEnded();
    const r = await answer;
    await device.close();
    return r;
  } finally {
    engine.acquire = acquire;
    await cloud.close({ drainSeconds: 0 });
    await cloudEngine.close();
    await backend.close();
  }
}

it.each([0, 2])(
  "a backend that dies after %i tokens: the device finishes the answer alone, every token of it",
  async (tokensBeforeDeath) => {
    const r = await answerWith({ gated: true }, { cloudBudget: 30, targetTpotMs: 0 }, async (backend, sent) => {
      backend.release(tokensBeforeDeath);
      await until(async () => (await sent()) === tokensBeforeDeath, "the cloud to send the tokens before the death");
      await backend.kill();
    });
    expect(r.mode).toBe("fallback");
    expect(r.cloudTokens).toBe(tokensBeforeDeath);
    expect(r.cloudTokens + r.deviceTokens).toBe(30);
    if (tokensBeforeDeath === 0) expect(r.text).toBe(local.text);
  },
);

it("a sampled answer whose backend holds back a token (a split character): the device finishes it", async () => {
  const held = new Set([engine.tokenize(prompt).length + 2]); // answer token 2
  const sampling = { temperature: 0.8, seed: 11 };
  const r = await answerWith({ holdBack: held }, { cloudBudget: 30, targetTpotMs: 0, sampling }, async () => {});
  expect(r.mode).toBe("fallback");
  expect(r.fallbackReason).toMatch(/sampled decoding \(temperature > 0\) cannot have the same tokens again/);
  expect(r.cloudTokens).toBe(2); // the tokens before the held-back one stand
  expect(r.cloudTokens + r.deviceTokens).toBe(30);
});

it("a cloud on llama-server without a shared --slot-save-path offers no KV: refused in Accepted, the answer is P/D", async () => {
  const r = await answerWith({}, { cloudBudget: 30, targetTpotMs: 0, useKv: true }, async () => {});
  // The export used to be granted, then failed the request mid-answer with UNSUPPORTED_FEATURE.
  expect(r.kv).toMatchObject({ granted: false, refusal: "UNSUPPORTED_FEATURE" });
  expect(r.mode).toBe("pd");
  expect(r.cloudTokens + r.deviceTokens).toBe(30);
});
