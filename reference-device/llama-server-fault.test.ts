/**
 * The cloud on a llama-server backend that dies mid-request (a fake one,
 * engine/test/): whatever the point, the device's answer is complete. The
 * backend here dies once it has the request and, in the second case, after
 * two tokens; the device's own prefill is held until the cloud has ended the
 * request, so that the device is still working when the cloud's last frames
 * come (a backend killed before its first token once gave an empty answer
 * that the device took as complete, issue 19).
 */
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Engine, ensureDefaultModel, llamaRuntime, LlamaServerEngine } from "../engine/index.js";
import { FakeLlamaServer, fakeModel } from "../engine/test/fake-llama-server.js";
import { until } from "../proto/test/until.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice } from "./device.js";
import { promptOf } from "./test/prompt.js";

const model = ensureDefaultModel("tiny");
let engine: Engine;
let vocab: LlamaModel;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: model, threads: 1, sequences: 1 });
  vocab = await (await llamaRuntime()).loadModel({ modelPath: model, vocabOnly: true });
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

it.each([0, 2])(
  "a backend that dies after %i tokens: the device finishes the answer alone, every token of it",
  async (tokensBeforeDeath) => {
    const backend = await FakeLlamaServer.start({
      model: fakeModel(model, (text) => vocab.tokenize(text, false) as number[]),
      gated: true,
    });
    const cloudEngine = await LlamaServerEngine.connect({ backends: [backend.url] });
    const cloud = await startCloud(
      { engine: "llama-server", logLevel: "silent", listen: { ws: "127.0.0.1:0" } },
      { engine: cloudEngine },
    );
    const prompt = promptOf(engine, 60);
    const local = await (await PdDevice.create({ engine })).generate(prompt, {
      maxTokens: 30,
      localOnly: true,
      targetTpotMs: 0,
    });
    let cloudEnded!: () => void;
    const acquire = engine.acquire;
    try {
      const device = await PdDevice.create({ engine, cloud: cloud.urls.ws, useKv: false });
      holdPrefill(new Promise((r) => (cloudEnded = r))); // after the device's calibration, which prefills
      const answer = device.generate(prompt, { maxTokens: 30, cloudBudget: 30, targetTpotMs: 0 });
      backend.release(tokensBeforeDeath);
      await until(() => backend.busy() === 1, "the backend to take the request");
      const sent = async () => (await cloud.metrics.sentTokens.get()).values[0]?.value ?? 0;
      await until(async () => (await sent()) === tokensBeforeDeath, "the cloud to send the tokens before the death");
      await backend.kill();
      await until(async () => (await cloud.metrics.requests.get()).values.length > 0, "the cloud to end the request");
      cloudEnded();
      const r = await answer;
      await device.close();
      expect(r.mode).toBe("fallback");
      expect(r.cloudTokens + r.deviceTokens).toBe(30);
      if (tokensBeforeDeath === 0) expect(r.text).toBe(local.text);
    } finally {
      engine.acquire = acquire;
      await cloud.close({ drainSeconds: 0 });
      await cloudEngine.close();
      await backend.close();
    }
  },
);
