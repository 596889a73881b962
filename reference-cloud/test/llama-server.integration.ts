/**
 * `npm run test:llama-server`: the reference cloud on real llama-server
 * processes (built by `npm run build:llama-server`), with the reference
 * device on node-llama-cpp. Two backends on the same GGUF; the device's P/D
 * answer equals its --local-only answer over every transport; a second model
 * with another vocabulary on the device; KV from a llama-server slot into the
 * device; takeover frees the backend's slot; a backend killed mid-answer; the
 * conformance suite, cloud role.
 *
 * Without the binary the suite skips with a message saying so, unless
 * PDD_REQUIRE_LLAMA_SERVER=1 (CI), which makes a missing binary a failure.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaServerSuite } from "./llama-server-suite.js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runConformance } from "../../conformance/runner.js";
import { problems } from "../../conformance/test/reference-cloud.js";
import {
  createModel,
  Engine,
  PRESETS,
  startLlamaServer,
  toSequenceImage,
  type LlamaServerProcess,
} from "../../engine/index.js";
import { readSeqStateHeader } from "../../engine/llama-server-kv.js";
import { PdDevice, type Report } from "../../reference-device/index.js";
import { promptOf } from "../../reference-device/test/prompt.js";
import { startCloud, type CloudPeer } from "../index.js";
import { until } from "../../proto/test/until.js";

const { found, suite } = llamaServerSuite();

const dir = mkdtempSync(join(tmpdir(), "pdd-llama-server-it-"));
const tiny = join(dir, "tiny.gguf");
const tinyB = join(dir, "tiny-b.gguf");
const saves = join(dir, "slots");
const KEY = "llama-server-it-key";
let backends: LlamaServerProcess[] = [];
let cloud: CloudPeer;
let device: Engine;
let deviceB: Engine;

const transports = ["ws", "grpc", "webtransport"] as const;
// Not offered, legitimately, as for the node-llama-cpp cloud: cloud.eos (the tiny model never ends) and cloud.idle
// (the default idle timeout); conformance-eos.test.ts and conformance-1-1.test.ts run them. Refinement is offered:
// the cloud scores prompts with a local model (--refine-model), llama-server giving no prompt log-probabilities.
// As for the node-llama-cpp cloud (conformance-cloud.test.ts): the tiny model never ends its answer, the idle
// timeout is longer than a case waits, and the vector model and a model without a byte token are not served.
const NOT_OFFERED = [
  "cloud.eos",
  "cloud.idle",
  "cloud.crossed-goodbye",
  "cloud.tokenization",
  "cloud.text.untokenizable",
];
const emulate = { prefillMsPerToken: 2, decodeMsPerToken: 0 };

const busySlots = async (b: LlamaServerProcess) =>
  ((await (await fetch(`${b.url}/slots`)).json()) as { is_processing: boolean }[]).filter((s) => s.is_processing)
    .length;

suite("the cloud on llama-server", () => {
  beforeAll(async () => {
    createModel(tiny, PRESETS.tiny);
    createModel(tinyB, PRESETS["tiny-b"]);
    mkdirSync(saves);
    backends = await Promise.all(
      [0, 1].map(() => startLlamaServer({ binary: found!.binary, model: tiny, slots: 2, slotSavePath: saves })),
    );
    writeFileSync(join(dir, "keys"), `${KEY}\n`);
    cloud = await startCloud({
      engine: "llama-server",
      backends: backends.map((b) => b.url),
      slotSaveDir: saves,
      refineModel: tiny,
      logLevel: process.env.PDD_LOG_LEVEL === "warn" ? "warn" : "silent",
      keysFile: join(dir, "keys"),
      limits: { handshakeTimeoutMs: 3000, maxRequestDurationMs: 6000 },
      listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
    });
    device = await Engine.load({ modelPath: tiny, sequences: 2, threads: 1 });
    deviceB = await Engine.load({ modelPath: tinyB, sequences: 1, threads: 1 });
  });
  afterAll(async () => {
    await cloud?.close({ drainSeconds: 0 });
    await device?.close();
    await deviceB?.close();
    await Promise.all(backends.map((b) => b.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  const baselines = new Map<Engine, Promise<Report>>();
  const baseline = (engine: Engine, prompt: string) => {
    if (!baselines.has(engine))
      baselines.set(
        engine,
        PdDevice.create({ engine, emulate }).then((d) =>
          d.generate(prompt, { maxTokens: 60, localOnly: true, targetTpotMs: 0 }),
        ),
      );
    return baselines.get(engine)!;
  };

  async function pd(engine: Engine, transport: (typeof transports)[number], useKv: boolean): Promise<Report> {
    const d = await PdDevice.create({
      engine,
      emulate,
      cloud: cloud.urls[transport],
      client: { ca: cloud.certificate.cert, authToken: KEY },
      useKv,
    });
    try {
      // The cloud paces at 2 × the display rate (10 ms a token): slower than the device's catch-up, so it takes over.
      return await d.generate(promptOf(engine, 150), { maxTokens: 60, cloudBudget: 60, targetTpotMs: 20 });
    } finally {
      await d.close();
    }
  }

  it.each(transports)("P/D over %s equals --local-only, with cloud tokens and a takeover", async (t) => {
    const r = await pd(device, t, false);
    const local = await baseline(device, promptOf(device, 150));
    expect(r.mode).toBe("pd");
    expect(r.cloudTokens).toBeGreaterThan(0);
    expect(r.takeoverIndex).not.toBeNull();
    expect(r.text).toBe(local.text);
    await until(async () => (await Promise.all(backends.map(busySlots))).every((n) => n === 0), "idle slots");
  });

  it("a device on another vocabulary (tiny-b) continues the cloud's text with no missing or doubled character", async () => {
    const r = await pd(deviceB, "ws", false);
    expect(r.mode).toBe("pd");
    expect(r.cloudTokens).toBeGreaterThan(0);
    expect(r.deviceTokens).toBeGreaterThan(0);
    // Both generated models write the same sentence, but 60 tokens are not the same text in two vocabularies
    // (the cloud's tokens count toward max_tokens in its own): the answer is a prefix of the device's own longer
    // answer.
    const local = await PdDevice.create({ engine: deviceB, emulate }).then((d) =>
      d.generate(promptOf(deviceB, 150), { maxTokens: 240, localOnly: true, targetTpotMs: 0 }),
    );
    expect(local.text.startsWith(r.text), JSON.stringify({ pd: r.text, local: local.text })).toBe(true);
  });

  it("a llama-server slot image, rewritten, loads into node-llama-cpp and decodes on the same", async () => {
    const prompt = device.tokenize(promptOf(device, 40));
    const filename = "kv-compare.bin";
    const body = { prompt, n_predict: 1, id_slot: 0, cache_prompt: true, return_tokens: true };
    await fetch(`${backends[0]!.url}/completion`, { method: "POST", body: JSON.stringify(body) }).then((r) => r.json());
    await fetch(`${backends[0]!.url}/slots/0?action=save`, { method: "POST", body: JSON.stringify({ filename }) });
    const server = new Uint8Array(readFileSync(join(saves, filename)));
    const image = toSequenceImage(server);
    expect(Array.from(readSeqStateHeader(image).tokens)).toEqual(prompt);
    const own = await device.acquire();
    await own.prefill([...prompt, 0]); // evaluates `prompt`; the 0 stays pending
    const mine = await own.exportState();
    await own.release();
    // Same layout and size after the header rewrite; how many state bytes differ is printed for docs/llama-server.md.
    let differ = 0;
    let first = -1;
    for (let i = 0; i < Math.min(image.length, mine.length); i++)
      if (image[i] !== mine[i]) {
        differ++;
        if (first < 0) first = i;
      }
    process.stderr.write(
      `llama-server: slot image ${server.length} B, rewritten ${image.length} B, node-llama-cpp ${mine.length} B; ` +
        `${differ} bytes differ (first at ${first})\n`,
    );
    expect(image.length).toBe(mine.length);
    expect(
      Buffer.from(image.subarray(0, 12 + 4 * prompt.length)).equals(
        Buffer.from(mine.subarray(0, 12 + 4 * prompt.length)),
      ),
    ).toBe(true);
    const slot = await device.acquire();
    await slot.importState(image, device.info.modelFingerprint, prompt.at(-1));
    const loaded: number[] = [];
    for await (const t of slot.generate({}, 12)) loaded.push(t);
    await slot.release();
    const ref = await device.acquire();
    await ref.prefill(prompt);
    const fresh: number[] = [];
    for await (const t of ref.generate({}, 12)) fresh.push(t);
    await ref.release();
    expect(loaded).toEqual(fresh);
  });

  it("KV from llama-server into the device: granted, imported, and the text still equals --local-only", async () => {
    const r = await pd(device, "ws", true);
    expect(r.kv.granted).toBe(true);
    expect(r.text).toBe((await baseline(device, promptOf(device, 150))).text);
    expect(r.kvImported).toBe(true);
  });

  it.each(transports)("the conformance suite, cloud role, passes over %s", async (t) => {
    const results = await runConformance({
      role: "cloud",
      target: cloud.urls[t]!,
      ca: cloud.certificate.cert,
      token: KEY,
      modelFile: tiny,
    });
    expect(problems(results, NOT_OFFERED)).toEqual([]);
  });

  it("a backend killed mid-answer: the answer completes, and the backend leaves rotation", async () => {
    const d = await PdDevice.create({ engine: device, emulate, cloud: cloud.urls.ws, client: { authToken: KEY } });
    const answer = d.generate(promptOf(device, 150), { maxTokens: 60, cloudBudget: 200, targetTpotMs: 50 });
    await until(() => (cloud.engine.backends?.() ?? []).some((b) => b.active > 0), "a request on a backend");
    const victim = cloud.engine.backends!().findIndex((b) => b.active > 0);
    await backends[victim]!.kill();
    const killedAt = performance.now();
    await until(() => !cloud.engine.backends!()[victim]!.healthy, "the dead backend to leave rotation");
    process.stderr.write(
      `llama-server: a killed backend left rotation after ${(performance.now() - killedAt).toFixed(0)} ms\n`,
    );
    const r = await answer;
    await d.close();
    const { mode, cloudTokens, deviceTokens, fallbackReason } = r;
    process.stderr.write(
      `llama-server: killed-backend answer ${JSON.stringify({ mode, cloudTokens, deviceTokens, fallbackReason })}\n`,
    );
    const report = JSON.stringify({ ...r, cloudTokenIds: undefined, deviceTokenIds: undefined });
    expect(r.text, report).toBe((await baseline(device, promptOf(device, 150))).text);
    const again = await pd(device, "ws", false);
    expect(again.text).toBe(r.text);
  });
});
