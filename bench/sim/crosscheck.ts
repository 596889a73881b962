/**
 * The simulation against the real stack: a slice of the trace through the
 * llama.cpp reference cloud and device over WebSocket, and the same requests
 * through the simulation with the rates measured on those engines. Prompts
 * and answers are clipped to what the test model and this machine serve in
 * seconds; the device emulates a phone-class slowdown.
 */
import { Engine, ensureDefaultModel, SKELETON_TEXT } from "../../engine/index.js";
import { startCloud } from "../../reference-cloud/index.js";
import { PdDevice } from "../../reference-device/index.js";
import { median } from "./bench.js";
import { simulate } from "./simulate.js";
import type { TraceRequest } from "./trace.js";

export interface CrossRow {
  promptTokens: number;
  answerTokens: number;
  measured: { ttftMs: number; tpotP50Ms: number; cloudTokens: number };
  predicted: { ttftMs: number; tpotP50Ms: number; cloudTokens: number };
}

export interface CrossOptions {
  requests: number;
  maxPromptTokens: number;
  maxAnswerTokens: number;
  targetTpotMs: number;
  /** Device slowdown, ms per token (a phone on this machine). */
  emulate: { prefillMsPerToken: number; decodeMsPerToken: number };
  onProgress?: (done: number, total: number) => void;
}

export async function crossCheck(
  trace: TraceRequest[],
  o: CrossOptions,
): Promise<{ rows: CrossRow[]; rates: Record<string, number> }> {
  const model = ensureDefaultModel("tiny");
  const cloud = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
  const engine = await Engine.load({ modelPath: model, threads: 1, sequences: 4 });
  const device = await PdDevice.create({
    engine,
    cloud: cloud.urls.ws!,
    useKv: false,
    emulate: o.emulate,
    targetTpotMs: o.targetTpotMs,
  });
  try {
    const rates = await measureRates(engine, device, o.targetTpotMs);
    const slice = trace.slice(0, o.requests).map((r) => ({
      ...r,
      promptTokens: Math.min(r.promptTokens, o.maxPromptTokens),
      answerTokens: Math.min(r.answerTokens, o.maxAnswerTokens),
    }));
    const rows: CrossRow[] = [];
    const before = deviceRates(device);
    for (const [i, r] of slice.entries()) {
      rows.push(await crossCheckOne(engine, device, r, rates, o.targetTpotMs));
      o.onProgress?.(i + 1, slice.length);
    }
    // The device's rates as they stood before the slice (each request's prediction reads them as they stood before it).
    return { rows, rates: { ...rates, ...before } };
  } finally {
    await device.close();
    await engine.close();
    await cloud.close({ drainSeconds: 0 });
  }
}

/** The rates fed to the simulation, each measured on this machine before the slice. */
interface MeasuredRates {
  cloudPrefill: number;
  cloudPrefillContended: number;
  cloudDecode: number;
  rttMs: number;
  overheadMs: number;
}

async function measureRates(engine: Engine, device: PdDevice, targetTpotMs: number): Promise<MeasuredRates> {
  // The cloud's rates, measured on its engine's twin: a prefill and a decode run.
  const slot = await engine.acquire();
  const probe = engine.tokenize(SKELETON_TEXT.repeat(20)).slice(0, 512);
  let t = performance.now();
  await slot.prefill(probe);
  const cloudPrefill = (1000 * probe.length) / (performance.now() - t);
  t = performance.now();
  let n = 0;
  for await (const _ of slot.generate({}, 32)) n++;
  const cloudDecode = (1000 * n) / (performance.now() - t);
  await slot.release();
  const rtt = (await device.rtt()) ?? 1;
  // Calibration on requests outside the slice, through the same stack: the
  // cloud's prefill rate while the device prefills beside it (they share
  // this machine's cores, which the idle measurement above does not see),
  // and the fixed cost of a request (tokenizing, framing, scheduling) from
  // a two-token prompt, which the model adds to the network's.
  const warm = engine.tokenize(SKELETON_TEXT.repeat(60)).slice(1, 400);
  for (let i = 0; i < 3; i++)
    await device.generate(Buffer.from(engine.bytes(warm.slice(i))).toString("utf8"), { maxTokens: 8, targetTpotMs });
  const contended = device.observed.cloudPrefillTokPerS ?? cloudPrefill;
  const tiny: number[] = [];
  for (let i = 0; i < 5; i++) tiny.push((await device.generate("Hi", { maxTokens: 2, targetTpotMs })).ttftMs);
  return {
    cloudPrefill,
    cloudPrefillContended: contended,
    cloudDecode,
    rttMs: rtt,
    overheadMs: Math.max(0, median(tiny, 0) - rtt - 1000 / cloudDecode),
  };
}

/** One trace request through the real stack, and through the simulation with the measured rates. */
async function crossCheckOne(
  engine: Engine,
  device: PdDevice,
  r: TraceRequest,
  rates: MeasuredRates,
  targetTpotMs: number,
): Promise<CrossRow> {
  const ids = engine.tokenize(SKELETON_TEXT.repeat(Math.ceil(r.promptTokens / 8) + 1)).slice(1, r.promptTokens);
  const prompt = Buffer.concat(ids.map((id) => engine.pieces[id] ?? new Uint8Array())).toString("utf8");
  // The prediction reads only what the device knew before this request:
  // generate() folds the request's own measurement into device.rates (learn()).
  const known = deviceRates(device);
  const rep = await device.generate(prompt, { maxTokens: r.answerTokens, targetTpotMs });
  const predicted = simulate(
    [{ atMs: 0, promptTokens: engine.tokenize(prompt).length, answerTokens: r.answerTokens }],
    { kind: "pd", budget: "planner", controller: true },
    {
      rttMs: rates.rttMs + rates.overheadMs,
      bandwidthMbps: 1000,
      cloud: {
        name: "measured",
        source: "this machine",
        prefillTokPerS: rates.cloudPrefillContended,
        decodeTokPerS: rates.cloudDecode,
      },
      device: {
        name: "measured",
        source: "this machine",
        prefillTokPerS: known.devicePrefill,
        decodeTokPerS: known.deviceDecode,
      },
      capacity: 4,
      targetTpotMs,
      // The reference cloud's default decodePace (config.ts): it sends ahead of the display at twice its rate.
      cloudPace: 2,
      timeScale: 1,
      minRefineRatio: 1,
      jitter: 0,
      seed: 1,
    },
  )[0]!;
  return {
    promptTokens: r.promptTokens,
    answerTokens: r.answerTokens,
    measured: { ttftMs: rep.ttftMs, tpotP50Ms: rep.tpotMs.p50, cloudTokens: rep.cloudTokens },
    predicted: { ttftMs: predicted.ttftMs, tpotP50Ms: median(predicted.gaps, 0), cloudTokens: predicted.cloudTokens },
  };
}

/** The device's prefill and decode rates, tokens per second, as it estimates them now. */
function deviceRates(device: PdDevice): { devicePrefill: number; deviceDecode: number } {
  return { devicePrefill: 1000 / device.rates.prefillMsPerToken, deviceDecode: 1000 / device.rates.decodeMsPerToken };
}
