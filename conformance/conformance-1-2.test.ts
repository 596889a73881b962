/**
 * Spec 1.2 (RefinedPrompt.scorer, §8.5): the cloud cases pass the reference
 * cloud at 1.2 and at 1.1 (a 1.2 peer and a 1.1 peer negotiate 1.1), a cloud
 * that scores with another model (llama-server with a refinement model), and
 * fail each broken cloud; the device case passes the reference device and
 * fails one that trusts the scorer.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LlamaModel } from "node-llama-cpp";
import { oracleOn } from "../cli/conformance-oracle.js";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { llamaRuntime } from "../engine/engine.js";
import { describeModel } from "../engine/model-info.js";
import { FakeLlamaServer } from "../engine/test/fake-llama-server.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { runConformance, runDeviceConformance } from "./runner.js";
import { REFUSES_ODD_SCORER } from "./test/device-mutants-1-2.js";
import { inProcessDevice } from "./test/in-process-device.js";
import { startMutant } from "./test/mutants.js";
import { MUTANTS_1_2 } from "./test/mutants-1-2.js";
import { KEY, MODEL, problems, startConformanceCloud } from "./test/reference-cloud.js";

const CASES = ["cloud.refine.scorer", "cloud.refine.scorer-before-1-2"];
const filter = CASES.join(",");

let cloud: CloudPeer;
let cloud11: CloudPeer;
beforeAll(async () => {
  [cloud, cloud11] = await Promise.all([
    startConformanceCloud({ ws: "127.0.0.1:0" }),
    startConformanceCloud({ ws: "127.0.0.1:0" }, MODEL, {}, 1),
  ]);
});
afterAll(async () => {
  await Promise.all([cloud, cloud11].map((c) => c.close({ drainSeconds: 0 })));
});

const logOf = (results: { log: string[] }[]) => results.flatMap((r) => r.log).join("\n");

describe("RefinedPrompt.scorer at the cloud", () => {
  it("the reference cloud at 1.2 names its served model, over both codecs", async () => {
    const results = await runConformance({ role: "cloud", target: cloud.urls.ws!, token: KEY, filter });
    expect(problems(results, [])).toEqual([]);
    expect(new Set(results.map((r) => `${r.id} ${r.codec}`)).size).toBe(4);
    const log = logOf(results);
    expect(log).toContain('"version":{"major":1,"minor":2}');
    expect(log).toContain('"scorer":{"name":');
  });

  it("a 1.1 cloud negotiates 1.1 with a 1.2 suite and sends no scorer", async () => {
    const results = await runConformance({ role: "cloud", target: cloud11.urls.ws!, token: KEY, filter });
    expect(problems(results, [])).toEqual([]);
    const log = logOf(results);
    expect(log).toContain('"version":{"major":1,"minor":1}');
    expect(log).not.toContain('"version":{"major":1,"minor":2}');
    expect(log).not.toContain('"scorer":{');
  });

  it.each(MUTANTS_1_2.map((m) => [m.name, m] as const))("a cloud that %s fails the named case", async (_n, m) => {
    const proxy = await startMutant(cloud.urls.ws!, m, KEY);
    try {
      const results = await runConformance({ role: "cloud", target: proxy.url, codecs: ["proto"], filter: m.mustFail });
      expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
    } finally {
      await proxy.close();
    }
  });
});

describe("RefinedPrompt.scorer from a cloud that scores with another model", () => {
  const dir = mkdtempSync(join(tmpdir(), "pdd-scorer-conf-"));
  const paths = { tiny: join(dir, "tiny.gguf"), small: join(dir, "small.gguf") };
  let fake: FakeLlamaServer;
  let vocab: LlamaModel;
  let front: CloudPeer;

  beforeAll(async () => {
    createModel(paths.tiny, PRESETS.tiny);
    createModel(paths.small, PRESETS.small);
    // The backend serves `small`; the cloud scores with `tiny`, a smaller model with the same vocabulary.
    vocab = await (await llamaRuntime()).loadModel({ modelPath: paths.small, vocabOnly: true });
    const d = describeModel(paths.small);
    fake = await FakeLlamaServer.start({
      model: {
        modelPath: paths.small,
        nVocab: d.info.vocabSize,
        nParams: d.parameters,
        nEmbd: d.embedding,
        nCtxTrain: d.info.contextLength,
        tokenize: (text) => vocab.tokenize(text, false) as number[],
      },
      slots: 4,
    });
    writeFileSync(join(dir, "keys"), `${KEY}\n`);
    front = await startCloud({
      engine: "llama-server",
      backends: [fake.url],
      refineModel: paths.tiny,
      logLevel: "silent",
      keysFile: join(dir, "keys"),
      listen: { ws: "127.0.0.1:0" },
    });
  });
  afterAll(async () => {
    await front?.close({ drainSeconds: 0 });
    await fake?.close();
    await vocab?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("names the refinement model, with the served model's tokenizer (llama-server with --refine-model)", async () => {
    const results = await runConformance({ role: "cloud", target: front.urls.ws!, token: KEY, filter });
    expect(problems(results, [])).toEqual([]);
    const tiny = describeModel(paths.tiny).info;
    const small = describeModel(paths.small).info;
    expect(Buffer.from(tiny.modelFingerprint).equals(Buffer.from(small.modelFingerprint))).toBe(false);
    const refined = logOf(results)
      .split("\n")
      .find((l) => l.includes('"scorer":{'));
    expect(refined).toContain(`"name":"${tiny.name}"`);
  });
});

describe("RefinedPrompt.scorer at the device", () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ modelPath: MODEL, threads: 1, sequences: 2 });
  });
  afterAll(() => engine.close());

  const run = () =>
    runDeviceConformance({
      role: "device",
      listen: "ws://127.0.0.1:0",
      // A prefill in chunks of 4 tokens at 30 ms a token: the refined prompt comes while it runs, so the device
      // switches to it (a device done prefilling never uses it, and would pass whatever it did with the scorer).
      launcher: inProcessDevice(
        engine,
        { maxTokens: 12, cloudBudget: 4, targetTpotMs: 1 },
        { prefillChunk: 4, emulate: { prefillMsPerToken: 30 } },
      ),
      codecs: ["proto"],
      filter: "device.refine.",
      oracle: oracleOn(engine),
    });

  it("the reference device uses the text by the cloud's tokenizer, whatever the scorer says", async () => {
    const results = await run();
    expect(problems(results, [])).toEqual([]);
    expect(results.map((r) => r.id)).toEqual(["device.refine.text", "device.refine.scorer"]);
    expect(logOf(results)).toContain('"version":{"major":1,"minor":2}');
  });

  it(`a device that ${REFUSES_ODD_SCORER.name} fails ${REFUSES_ODD_SCORER.mustFail.join(", ")}`, async () => {
    const undo = REFUSES_ODD_SCORER.apply!();
    try {
      const results = await run();
      const failed = results.filter((r) => r.status === "fail").map((r) => r.id);
      expect(failed, JSON.stringify(results.map((r) => [r.id, r.status, r.details]))).toEqual(
        REFUSES_ODD_SCORER.mustFail,
      );
    } finally {
      undo();
    }
  });
});
