/**
 * The demo: what a user of P/D-Device would see on one long prompt. It
 * generates the embedded model if it is missing, starts a reference cloud with
 * TLS on all three bindings behind the network emulator (transports/netem.ts:
 * a stated RTT and bandwidth), and answers the prompt with a device alone and
 * then through the cloud over each binding. `pdd demo` (cli/demo.ts) prints it.
 *
 * What sets the numbers, so the table can say it:
 * - TTFT runs from the user's submit to the first text on screen. "Cold" is a
 *   new device's first request: the TCP, TLS and binding handshakes and the
 *   Hello/HelloAck are inside it. "Warm" is the next request on the open
 *   connection, with another prompt of the same length (no cache can help it).
 *   Only the warm run shows its whole answer; the cold one (and the sweep's
 *   device-only run) stops at its first text, which keeps the demo under a minute.
 * - The cloud's cost is the tokens it decoded (End.usage), against cloud-only's.
 * - The device's speed is this CPU's, or an emulated phone's: the published
 *   prefill and decode rates of engine/profiles.ts, reached by adding a sleep
 *   per token on top of this CPU's measured rate. The ratio to device-only is
 *   set by that choice, so the demo shows it at every speed side by side.
 */
import { statSync } from "node:fs";
import { Engine, ensureDefaultModel, PHONE, PHONE_NPU, readGgufHeader, type Profile } from "../engine/index.js";
import { ErrorCode, PddError } from "../proto/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice, type Emulation, type GenerateOptions, type Report } from "../reference-device/index.js";
import { createSelfSignedCertificate, startNetem, type Netem } from "../transports/index.js";

/** The device speeds the demo can emulate: none (this CPU) or a published phone profile. */
export const DEVICE_SPEEDS = ["phone", "phone-npu", "none"] as const;
export type DeviceSpeed = (typeof DEVICE_SPEEDS)[number];
const PUBLISHED: Record<Exclude<DeviceSpeed, "none">, Profile> = { phone: PHONE, "phone-npu": PHONE_NPU };

export interface DemoOptions {
  /** A GGUF model for both peers (default: the embedded model, generated on first use). */
  modelPath?: string;
  /** Notes in the prompt: its length; "auto": 20, or as many as fit the model's context with the answer. */
  notes: number | "auto";
  maxTokens: number;
  /** The cloud's token budget, or "auto" for the planner's. */
  budget: number | "auto";
  /** The device speed of the main table. */
  device: DeviceSpeed;
  /** Also run device-only and P/D (WebSocket) at every other device speed. */
  sweep: boolean;
  /** The emulated network: round trip (ms) and per-direction bandwidth (Mbit/s). */
  rttMs: number;
  bandwidthMbps: number;
  codec: "proto" | "msgpack";
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One device speed: what it is called and the emulation that reaches it on this CPU. */
export interface DeviceSetting {
  speed: DeviceSpeed;
  label: string;
  prefillTokPerS: number;
  decodeTokPerS: number;
  emulate: Emulation;
  /** The emulated model's KV bytes per position (none for this CPU's own model). */
  kvBytesPerToken?: number;
}

export interface DemoRow {
  speed: DeviceSpeed;
  transport: string;
  mode: "device only" | "P/D" | "P/D + KV" | "cloud only";
  /** From submit to the first text, ms, on a new connection (null: no connection). */
  coldTtftMs: number | null;
  /** From submit to the first text, ms, on an open connection (device only: its only run). */
  warmTtftMs: number;
  /** The warm run's report. */
  report: Report;
}

export interface DemoRun {
  /** The model both peers ran: its name, file and size. */
  model: { name: string; path: string; bytes: number; embedded: boolean; contextSize: number };
  /** Notes in the prompt (fewer than asked when "auto" had to fit a small context). */
  notes: number;
  promptTokens: number;
  /** The embedded model's KV bytes per position: what the "P/D + KV" row's image holds. */
  kvBytesPerToken: number;
  /** This CPU's measured rates with no emulation, ms per token. */
  cpu: { prefillMsPerToken: number; decodeMsPerToken: number };
  settings: DeviceSetting[];
  rows: DemoRow[];
  options: DemoOptions;
}

/** The demo's prompt; `label` varies it, so a warm request is not a repeat the cloud could have cached. */
export const demoPrompt = (notes: number, label = "Note") =>
  `${Array.from({ length: notes }, (_, i) => `${label} ${i + 1}: the cloud prefills fast, the device decodes.`).join(" ")} ` +
  "Summarise the notes above in one sentence.";

/**
 * The emulation that brings this CPU down to `speed`'s published rates: each
 * local step padded to the published ms per token (nothing when this CPU is
 * slower). Padding, not a fixed sleep on top of a calibrated rate: a 64-token
 * calibration overestimated this CPU's per-token cost on a long prompt, and
 * the "758 tok/s" device prefilled at 1,565.
 */
export function deviceSetting(speed: DeviceSpeed, cpu: DemoRun["cpu"]): DeviceSetting {
  if (speed === "none")
    return {
      speed,
      label: "this CPU, no emulation",
      prefillTokPerS: 1000 / cpu.prefillMsPerToken,
      decodeTokPerS: 1000 / cpu.decodeMsPerToken,
      emulate: {},
    };
  const p = PUBLISHED[speed];
  return {
    speed,
    label: `emulated ${p.name}`,
    prefillTokPerS: p.prefillTokPerS,
    decodeTokPerS: p.decodeTokPerS,
    emulate: { prefillMsPerToken: 1000 / p.prefillTokPerS, decodeMsPerToken: 1000 / p.decodeTokPerS, mode: "pad" },
    kvBytesPerToken: p.kvBytesPerToken,
  };
}

/**
 * A generate call timed as the user sees it: from submit to the first text
 * shown. `ttftOnly` stops the answer there (the user's stop button): a run
 * whose only number is its TTFT does not spend the answer's length on screen.
 */
async function timed(device: PdDevice, prompt: string, opts: GenerateOptions, ttftOnly = false) {
  let first: number | undefined;
  const stop = new AbortController();
  const t0 = performance.now();
  const report = await device.generate(prompt, {
    ...opts,
    signal: stop.signal,
    onText: () => {
      first ??= performance.now();
      if (ttftOnly) stop.abort();
    },
  });
  return { ttftMs: (first ?? Number.NaN) - t0, report };
}

interface Stage {
  engine: Engine;
  /** Every table row's prompt; a cold request asks `coldPrompt`, of the same length, first. */
  prompt: string;
  coldPrompt: string;
  cloud: CloudPeer;
  urls: Record<"websocket" | "grpc" | "webtransport", string>;
  o: DemoOptions;
}

/** A new device's first request (cold) and its second (warm), through the cloud. */
async function coldAndWarm(
  s: Stage,
  setting: DeviceSetting,
  transport: keyof Stage["urls"],
  mode: DemoRow["mode"],
): Promise<DemoRow> {
  const device = await PdDevice.create({
    engine: s.engine,
    cloud: s.urls[transport],
    client: { ca: s.cloud.certificate.cert, codec: transport === "grpc" ? "proto" : s.o.codec },
    emulate: setting.emulate,
    useKv: mode === "P/D + KV",
  });
  const opts: GenerateOptions = {
    maxTokens: s.o.maxTokens,
    cloudOnly: mode === "cloud only",
    cloudBudget: s.o.budget,
  };
  try {
    s.o.log?.(`${setting.speed}: ${mode} over ${transport} …`);
    const cold = await timed(device, s.coldPrompt, opts, true);
    const warm = await timed(device, s.prompt, opts);
    return {
      speed: setting.speed,
      transport,
      mode,
      coldTtftMs: cold.ttftMs,
      warmTtftMs: warm.ttftMs,
      report: warm.report,
    };
  } finally {
    await device.close();
  }
}

/** The device alone; `ttftOnly` (the sweep's rows) stops at the first text, the table's only use of it. */
async function deviceOnly(s: Stage, setting: DeviceSetting, ttftOnly: boolean): Promise<DemoRow> {
  s.o.log?.(`${setting.speed}: device only …`);
  const device = await PdDevice.create({ engine: s.engine, emulate: setting.emulate });
  const run = await timed(device, s.prompt, { maxTokens: s.o.maxTokens, localOnly: true }, ttftOnly);
  await device.close();
  return {
    speed: setting.speed,
    transport: "—",
    mode: "device only",
    coldTtftMs: null,
    warmTtftMs: run.ttftMs,
    report: run.report,
  };
}

/** The main table at `o.device`: every binding, KV and cloud-only beside P/D; the sweep's other speeds on WebSocket. */
async function rowsFor(s: Stage, settings: DeviceSetting[]): Promise<DemoRow[]> {
  const rows: DemoRow[] = [];
  for (const setting of settings) {
    const main = setting.speed === s.o.device;
    rows.push(await deviceOnly(s, setting, !main));
    for (const t of main ? (["websocket", "grpc", "webtransport"] as const) : (["websocket"] as const))
      rows.push(await coldAndWarm(s, setting, t, "P/D"));
    if (!main) continue;
    rows.push(await coldAndWarm(s, setting, "websocket", "P/D + KV"));
    rows.push(await coldAndWarm(s, setting, "websocket", "cloud only"));
  }
  return rows;
}

/** The model file, checked before anything starts: a missing or non-GGUF file is INVALID_ARGUMENT (exit 1). */
function demoModel(o: DemoOptions): string {
  if (o.modelPath === undefined) {
    o.log?.("generating or loading the embedded model …");
    return ensureDefaultModel("tiny");
  }
  readGgufHeader(o.modelPath);
  return o.modelPath;
}

export const DEFAULT_NOTES = 20;

/** The notes that make the prompt: as asked, or ("auto") the default shortened to fit the context with the answer. */
function fitNotes(engine: Engine, o: DemoOptions): number {
  const fits = (n: number) => engine.tokenize(demoPrompt(n, "Memo")).length + o.maxTokens <= engine.contextSize;
  if (o.notes !== "auto") {
    if (!fits(o.notes))
      throw new PddError(
        ErrorCode.PROMPT_TOO_LONG,
        `${o.notes} notes and ${o.maxTokens} answer tokens do not fit the model's context of ${engine.contextSize}: ` +
          "lower --notes or --max-tokens",
      );
    return o.notes;
  }
  let n = DEFAULT_NOTES;
  while (n > 1 && !fits(n)) n--;
  if (!fits(n))
    throw new PddError(
      ErrorCode.PROMPT_TOO_LONG,
      `a ${o.maxTokens}-token answer leaves no room for a prompt in the model's context of ${engine.contextSize}`,
    );
  return n;
}

export async function runDemo(o: DemoOptions): Promise<DemoRun> {
  const modelPath = demoModel(o);
  const tls = await createSelfSignedCertificate();
  const cloud = await startCloud({
    model: modelPath,
    threads: 1,
    logLevel: "warn",
    tls: { cert: tls.cert, key: tls.key },
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
  const netems: Netem[] = [];
  const engine = await Engine.load({ modelPath, sequences: 4, threads: 1 });
  try {
    const notes = fitNotes(engine, o);
    const behind = async (url: string) => {
      const n = await startNetem({
        target: { port: Number(new URL(url).port) },
        rttMs: o.rttMs,
        bandwidthMbps: o.bandwidthMbps,
      });
      netems.push(n);
      return n.via(url);
    };
    const urls = {
      websocket: await behind(cloud.urls.ws!),
      grpc: await behind(cloud.urls.grpc!),
      webtransport: await behind(cloud.urls.webtransport!),
    };
    const cpuDevice = await PdDevice.create({ engine });
    const cpu = { ...cpuDevice.rates };
    await cpuDevice.close();
    const speeds = o.sweep ? [o.device, ...DEVICE_SPEEDS.filter((d) => d !== o.device)] : [o.device];
    const settings = speeds.map((d) => deviceSetting(d, cpu));
    const prompt = demoPrompt(notes);
    const rows = await rowsFor({ engine, prompt, coldPrompt: demoPrompt(notes, "Memo"), cloud, urls, o }, settings);
    const promptTokens = engine.tokenize(prompt).length;
    const model = {
      name: engine.info.name,
      path: modelPath,
      bytes: statSync(modelPath).size,
      embedded: o.modelPath === undefined,
      contextSize: engine.contextSize,
    };
    return { model, notes, promptTokens, kvBytesPerToken: engine.kvBytesPerToken, cpu, settings, rows, options: o };
  } finally {
    for (const n of netems) await n.close();
    await cloud.close({ drainSeconds: 1 });
    await engine.close();
  }
}
