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
 * - The device's speed is this CPU's, or an emulated phone's: the published
 *   prefill and decode rates of engine/profiles.ts, reached by adding a sleep
 *   per token on top of this CPU's measured rate. The ratio to device-only is
 *   set by that choice, so the demo shows it at every speed side by side.
 */
import { Engine, ensureDefaultModel, PHONE, PHONE_NPU, type Profile } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice, type GenerateOptions, type Report } from "../reference-device/index.js";
import { createSelfSignedCertificate, startNetem, type Netem } from "../transports/index.js";

/** The device speeds the demo can emulate: none (this CPU) or a published phone profile. */
export const DEVICE_SPEEDS = ["phone", "phone-npu", "none"] as const;
export type DeviceSpeed = (typeof DEVICE_SPEEDS)[number];
const PUBLISHED: Record<Exclude<DeviceSpeed, "none">, Profile> = { phone: PHONE, "phone-npu": PHONE_NPU };

export interface DemoOptions {
  /** Notes in the prompt: its length. */
  notes: number;
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

/** One device speed: what it is called and the extra ms per token that reach it on this CPU. */
export interface DeviceSetting {
  speed: DeviceSpeed;
  label: string;
  prefillTokPerS: number;
  decodeTokPerS: number;
  emulate: { prefillMsPerToken: number; decodeMsPerToken: number };
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
  promptTokens: number;
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

/** The emulation that brings this CPU down to `speed`'s published rates (none when this CPU is slower already). */
export function deviceSetting(speed: DeviceSpeed, cpu: DemoRun["cpu"]): DeviceSetting {
  if (speed === "none")
    return {
      speed,
      label: "this CPU, no emulation",
      prefillTokPerS: 1000 / cpu.prefillMsPerToken,
      decodeTokPerS: 1000 / cpu.decodeMsPerToken,
      emulate: { prefillMsPerToken: 0, decodeMsPerToken: 0 },
    };
  const p = PUBLISHED[speed];
  return {
    speed,
    label: `emulated ${p.name}`,
    prefillTokPerS: p.prefillTokPerS,
    decodeTokPerS: p.decodeTokPerS,
    emulate: {
      prefillMsPerToken: Math.max(0, 1000 / p.prefillTokPerS - cpu.prefillMsPerToken),
      decodeMsPerToken: Math.max(0, 1000 / p.decodeTokPerS - cpu.decodeMsPerToken),
    },
  };
}

/** A generate call timed as the user sees it: from submit to the first text shown. */
async function timed(device: PdDevice, prompt: string, opts: GenerateOptions) {
  let first: number | undefined;
  const t0 = performance.now();
  const report = await device.generate(prompt, { ...opts, onText: () => (first ??= performance.now()) });
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
    const cold = await timed(device, s.coldPrompt, opts);
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

async function deviceOnly(s: Stage, setting: DeviceSetting): Promise<DemoRow> {
  s.o.log?.(`${setting.speed}: device only …`);
  const device = await PdDevice.create({ engine: s.engine, emulate: setting.emulate });
  const run = await timed(device, s.prompt, { maxTokens: s.o.maxTokens, localOnly: true });
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
    rows.push(await deviceOnly(s, setting));
    const main = setting.speed === s.o.device;
    for (const t of main ? (["websocket", "grpc", "webtransport"] as const) : (["websocket"] as const))
      rows.push(await coldAndWarm(s, setting, t, "P/D"));
    if (!main) continue;
    rows.push(await coldAndWarm(s, setting, "websocket", "P/D + KV"));
    rows.push(await coldAndWarm(s, setting, "websocket", "cloud only"));
  }
  return rows;
}

export async function runDemo(o: DemoOptions): Promise<DemoRun> {
  o.log?.("generating or loading the embedded model …");
  const modelPath = ensureDefaultModel("tiny");
  const tls = await createSelfSignedCertificate();
  const cloud = await startCloud({
    model: modelPath,
    logLevel: "warn",
    tls: { cert: tls.cert, key: tls.key },
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
  const netems: Netem[] = [];
  const engine = await Engine.load({ modelPath, sequences: 4 });
  try {
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
    const prompt = demoPrompt(o.notes);
    const rows = await rowsFor({ engine, prompt, coldPrompt: demoPrompt(o.notes, "Memo"), cloud, urls, o }, settings);
    return { promptTokens: engine.tokenize(prompt).length, cpu, settings, rows, options: o };
  } finally {
    for (const n of netems) await n.close();
    await cloud.close({ drainSeconds: 1 });
    await engine.close();
  }
}
