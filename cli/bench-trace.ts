/** `pdd bench trace`: the trace simulation that compares the planner with fixed choices, and its live and llama.cpp cross-checks. */
import { writeFileSync } from "node:fs";
import {
  batchingComparison,
  CLOUD_GPU,
  crossCheck,
  DEFAULT_LIVE,
  liveMarkdown,
  markdown,
  median,
  NO_BATCHING,
  PROFILES,
  readTrace,
  replayLive,
  runTraceBench,
  SHAPES,
  synthesize,
  VLLM_H100_8B,
  TraceError,
  writePlots,
} from "../bench/index.js";
import { choiceFlag, intFlag, numFlag, parseFlags, UsageError, type Io, type Run } from "./kit.js";

const TRACE_FLAGS = {
  trace: { type: "string" },
  limit: { type: "string" },
  "rtt-ms": { type: "string" },
  capacity: { type: "string" },
  "time-scale": { type: "string" },
  "tpot-ms": { type: "string" },
  "bandwidth-mbps": { type: "string" },
  "refine-min-ratio": { type: "string" },
  jitter: { type: "string" },
  seed: { type: "string" },
  json: { type: "string" },
  plots: { type: "string" },
  real: { type: "string" },
  "device-prefill": { type: "string" },
  "device-decode": { type: "string" },
  "device-profile": { type: "string" },
  live: { type: "string" },
  transport: { type: "string" },
  "live-rtt-ms": { type: "string" },
  "live-modes": { type: "string" },
  "max-prompt": { type: "string" },
  "max-answer": { type: "string" },
  batching: { type: "string" },
  shape: { type: "string" },
  "max-cloud-budget": { type: "string" },
} as const;

type TraceFlags = ReturnType<typeof parseFlags<typeof TRACE_FLAGS>>["values"];
type Trace = ReturnType<typeof readTrace>;
type Progress = (done: number, total: number) => void;

export const runBenchTrace: Run = async (argv, io) => {
  const { values } = parseFlags(argv, TRACE_FLAGS);
  if (!values.trace === !values.shape)
    throw new UsageError(
      `give one of --trace FILE (an Azure LLM inference CSV trace) or --shape ${SHAPES.map((x) => x.name).join("|")}`,
    );
  const real = values.real === undefined ? 0 : intFlag("real", values.real, 20, 1, 1000);
  const live = values.live === undefined ? 0 : intFlag("live", values.live, 200, 1, 100_000);
  const rtts = (values["rtt-ms"] ?? "20,50,150").split(",").map((x) => numFlag("rtt-ms", x, 0, true));
  const base = simulationConfig(values);
  liveFlags(values); // a wrong --live-modes or --transport is refused before the simulation runs
  const { trace, source } = loadTrace(values, base.seed);
  const bar: Progress = (done, total) => {
    const w = 30;
    const f = Math.round((w * done) / total);
    io.progress(`\r[${"#".repeat(f)}${" ".repeat(w - f)}] ${Math.round((100 * done) / total)}%`);
  };
  const t0 = performance.now();
  const rows = runTraceBench(trace, base, rtts, bar);
  io.progress("\r\x1b[K");
  printSimulation(io, source, trace.length, base);
  io.log(markdown(rows));
  const at = rtts.includes(50) ? 50 : rtts[0]!;
  io.log(`### With and without batched cloud decoding (RTT ${at} ms)\n`);
  for (const l of batchingComparison(trace, base, at, [NO_BATCHING, VLLM_H100_8B])) io.log(l);
  io.log(`\n(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const json: Record<string, unknown> = { config: { ...base, rtts, requests: trace.length }, rows };
  if (values.json) writeFileSync(values.json, JSON.stringify(json, null, 2));
  if (values.plots)
    for (const f of writePlots(values.plots, trace, rows, base, rtts.includes(50) ? 50 : rtts[0]!))
      io.log(`wrote ${f}`);
  if (real > 0) await printCrossCheck(io, trace, real, bar);
  if (live > 0) {
    const runs = await printLiveReplay(io, values, trace.slice(0, live), base, bar);
    if (values.json) {
      json.live = runs.map(liveJson);
      writeFileSync(values.json, JSON.stringify(json, null, 2));
    }
  }
  return 0;
};

type SimulationConfig = ReturnType<typeof simulationConfig>;

/** The simulation's cloud, device, network and pacing, from the flags. */
function simulationConfig(values: TraceFlags) {
  const minRatio = numFlag("refine-min-ratio", values["refine-min-ratio"], 0.5);
  if (minRatio > 1) throw new UsageError("--refine-min-ratio must be in (0, 1]");
  const jitter = numFlag("jitter", values.jitter, 0.1, true);
  if (jitter >= 1) throw new UsageError("--jitter must be below 1");
  const profile =
    PROFILES[choiceFlag("device-profile", values["device-profile"], ["phone", "phone-npu"] as const, "phone")]!;
  return {
    bandwidthMbps: numFlag("bandwidth-mbps", values["bandwidth-mbps"], 100),
    cloud: CLOUD_GPU,
    device:
      values["device-prefill"] || values["device-decode"]
        ? {
            ...profile,
            name: "device (rates from flags)",
            source: "--device-prefill/--device-decode",
            prefillTokPerS: numFlag("device-prefill", values["device-prefill"], profile.prefillTokPerS),
            decodeTokPerS: numFlag("device-decode", values["device-decode"], profile.decodeTokPerS),
          }
        : profile,
    capacity: intFlag("capacity", values.capacity, 64, 1, 100_000),
    targetTpotMs: numFlag("tpot-ms", values["tpot-ms"], 50),
    timeScale: numFlag("time-scale", values["time-scale"], 1),
    minRefineRatio: minRatio,
    jitter,
    seed: intFlag("seed", values.seed, 1, 0, 2 ** 31),
    batching: { none: NO_BATCHING, "vllm-h100": VLLM_H100_8B }[
      choiceFlag("batching", values.batching, ["vllm-h100", "none"] as const, "vllm-h100")
    ],
    maxCloudBudget: intFlag("max-cloud-budget", values["max-cloud-budget"], 256, 1, 1 << 20),
  };
}

/** Reads the trace, or synthesizes one of a shape; a malformed trace is a usage error. */
function loadTrace(values: TraceFlags, seed: number): { trace: Trace; source: string } {
  const limit = intFlag("limit", values.limit, 5000, 1, 10_000_000);
  if (values.shape) {
    const names = SHAPES.map((x) => x.name);
    const shape = SHAPES.find((x) => x.name === choiceFlag("shape", values.shape, names, names[0]!))!;
    return { trace: synthesize(shape, limit, seed), source: `the synthetic shape ${shape.name} (${shape.about})` };
  }
  try {
    return { trace: readTrace(values.trace!, limit), source: values.trace! };
  } catch (e) {
    if (e instanceof TraceError) throw new UsageError(e.message);
    throw e;
  }
}

/** The heading of the simulation's report: what sets each number. */
function printSimulation(io: Io, file: string, requests: number, base: SimulationConfig): void {
  const d = base.device;
  io.log(`# Trace simulation: ${requests} requests from ${file}\n`);
  io.log(
    `Cloud: ${CLOUD_GPU.name}, ${base.capacity} concurrent sequences (${CLOUD_GPU.source}). ` +
      `Device: ${d.name}, prefill ${d.prefillTokPerS} tok/s, decode ${d.decodeTokPerS} tok/s (${d.source}).`,
  );
  io.log(
    `Target TPOT ${base.targetTpotMs} ms (a stall is a gap over ${2 * base.targetTpotMs} ms); ${base.bandwidthMbps} Mbit/s; ` +
      `RTT jitter ±${base.jitter * 100}% (seed ${base.seed}); arrivals × ${base.timeScale}; ` +
      `refinement ratio ≥ ${base.minRefineRatio}.\n`,
  );
  const b = base.batching;
  io.log(
    b === NO_BATCHING
      ? "Cloud batching: none: every sequence decodes at the single-stream rate."
      : `Cloud batching: each sequence decodes at the single-stream rate × the slowdown measured at its batch size ` +
          `(${b.name}; ${b.source}; applied to the RTX 4090's rate, an assumption); each request at the batch it joins.`,
  );
  io.log(`The cloud grants at most ${base.maxCloudBudget} tokens a P/D request (max_cloud_token_budget).\n`);
}

function liveFlags(values: TraceFlags) {
  const liveModes = (values["live-modes"] ?? "device-only,cloud-only,pd")
    .split(",")
    .map((m) => choiceFlag("live-modes", m, ["device-only", "cloud-only", "pd"] as const, "pd"));
  const transport = choiceFlag("transport", values.transport, ["ws", "grpc", "webtransport"] as const, "ws");
  return { liveModes, transport };
}

/** `--live N`: the first N requests through the real peers, once per mode. */
async function printLiveReplay(io: Io, values: TraceFlags, first: Trace, base: SimulationConfig, bar: Progress) {
  const { liveModes, transport } = liveFlags(values);
  const maxPrompt = intFlag("max-prompt", values["max-prompt"], 4096, 2, 131_072);
  const maxAnswer = intFlag("max-answer", values["max-answer"], 512, 1, 1 << 20);
  const slice = first.map((r) => ({
    ...r,
    promptTokens: Math.min(r.promptTokens, maxPrompt),
    answerTokens: Math.min(r.answerTokens, maxAnswer),
  }));
  const c = {
    ...DEFAULT_LIVE,
    transport,
    rttMs: numFlag("live-rtt-ms", values["live-rtt-ms"], 50, true),
    bandwidthMbps: base.bandwidthMbps,
    capacity: base.capacity,
    targetTpotMs: base.targetTpotMs,
    arrivalScale: base.timeScale,
    device: base.device,
    batching: base.batching,
    minRefineRatio: base.minRefineRatio,
    onProgress: bar,
  };
  const runs = [];
  const t1 = performance.now();
  for (const mode of liveModes) runs.push(await replayLive(slice, mode, c));
  io.progress("\r\x1b[K");
  const arrivalsS = ((slice.at(-1)!.atMs * c.arrivalScale) / 1000).toFixed(0);
  const wallS = ((performance.now() - t1) / 1000).toFixed(0);
  io.log(
    `\n## Live replay: ${slice.length} trace requests through the real stack (${arrivalsS} s of arrivals, ${wallS} s in all)\n`,
  );
  io.log(
    `Reference cloud (${c.capacity} sequences, simulated ${c.cloud.name}) and one reference device per phone ` +
      `(simulated ${c.device.name}), ${transport} through the network emulator (RTT ${c.rttMs} ms, ${c.bandwidthMbps} Mbit/s); ` +
      `prompts ≤ ${maxPrompt}, answers ≤ ${maxAnswer} tokens. "model" is the token-level simulation of the same requests.\n`,
  );
  io.log(liveMarkdown(runs, c));
  return runs;
}

function liveJson(r: Awaited<ReturnType<typeof replayLive>>) {
  return {
    mode: r.mode,
    cloud: r.cloud,
    errors: r.errors,
    fallbacks: r.fallbacks,
    fallbackReasons: r.fallbackReasons,
    devices: r.devices,
    wallMs: r.wallMs,
    measured: r.measured.map((m) => ({ ttftMs: m.ttftMs, maxGapMs: Math.max(0, ...m.gaps) })),
    predicted: r.predicted.map((m) => ({ ttftMs: m.ttftMs, maxGapMs: Math.max(0, ...m.gaps) })),
  };
}

/** `--real N`: the first N requests through the llama.cpp peers, against the simulation's prediction for them. */
async function printCrossCheck(
  io: Io,
  trace: Parameters<typeof crossCheck>[0],
  n: number,
  bar: (d: number, t: number) => void,
): Promise<void> {
  const o = {
    requests: n,
    maxPromptTokens: 600,
    maxAnswerTokens: 48,
    targetTpotMs: 40,
    emulate: { prefillMsPerToken: 3, decodeMsPerToken: 20 },
    onProgress: bar,
  };
  const { rows, rates } = await crossCheck(trace, o);
  io.progress("\r\x1b[K");
  const err = (m: number, p: number) => Math.abs(p - m) / Math.max(1e-9, m);
  const within = (f: (r: (typeof rows)[number]) => number) => rows.filter((r) => f(r) <= 0.25).length;
  const med = (xs: number[]) => median(xs, 0);
  const e = o.emulate;
  io.log(
    `\n## Cross-check: ${rows.length} trace requests through the llama.cpp peers (embedded model, WebSocket, ` +
      `prompts ≤ ${o.maxPromptTokens} and answers ≤ ${o.maxAnswerTokens} tokens, device emulating ` +
      `+${e.prefillMsPerToken} ms/prefill token and +${e.decodeMsPerToken} ms/decoded token, target TPOT ${o.targetTpotMs} ms)\n`,
  );
  const f = (x: number | undefined, digits: number) => x!.toFixed(digits);
  io.log(
    `Measured rates fed to the simulation: cloud prefill ${f(rates.cloudPrefillContended, 0)} tok/s beside the device's prefill ` +
      `(${f(rates.cloudPrefill, 0)} alone), decode ${f(rates.cloudDecode, 0)} tok/s; device prefill ${f(rates.devicePrefill, 0)} tok/s, ` +
      `decode ${f(rates.deviceDecode, 1)} tok/s; RTT ${f(rates.rttMs, 2)} ms plus ${f(rates.overheadMs, 2)} ms of fixed per-request cost ` +
      "(from a two-token prompt). All measured before the slice, on other requests.\n",
  );
  io.log(
    "| prompt | answer | TTFT measured ms | predicted | error | TPOT p50 measured ms | predicted | error | " +
      "cloud tokens measured | predicted |",
  );
  io.log("|---|---|---|---|---|---|---|---|---|---|");
  const pct = (m: number, p: number) => `${(100 * err(m, p)).toFixed(0)}%`;
  for (const { measured: m, predicted: p, ...r } of rows) {
    const ttft = `${m.ttftMs.toFixed(1)} | ${p.ttftMs.toFixed(1)} | ${pct(m.ttftMs, p.ttftMs)}`;
    const tpot = `${m.tpotP50Ms.toFixed(1)} | ${p.tpotP50Ms.toFixed(1)} | ${pct(m.tpotP50Ms, p.tpotP50Ms)}`;
    io.log(`| ${r.promptTokens} | ${r.answerTokens} | ${ttft} | ${tpot} | ${m.cloudTokens} | ${p.cloudTokens} |`);
  }
  // Signed errors (predicted − measured) / measured: their spread is the noise, their median the bias.
  const signed = (m: (r: (typeof rows)[number]) => number, p: (r: (typeof rows)[number]) => number) =>
    rows.map((r) => (p(r) - m(r)) / Math.max(1e-9, m(r))).sort((a, b) => a - b);
  const spread = (xs: number[]) => {
    const at = (q: number) => xs[Math.min(xs.length - 1, Math.floor(q * (xs.length - 1)))]!;
    const pc = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(0)}%`;
    return `p10 ${pc(at(0.1))}, median ${pc(at(0.5))}, p90 ${pc(at(0.9))}; |error| median ${(100 * med(xs.map(Math.abs))).toFixed(0)}%`;
  };
  const ttft = spread(
    signed(
      (r) => r.measured.ttftMs,
      (r) => r.predicted.ttftMs,
    ),
  );
  const tpot = spread(
    signed(
      (r) => r.measured.tpotP50Ms,
      (r) => r.predicted.tpotP50Ms,
    ),
  );
  const ttftWithin = within((r) => err(r.measured.ttftMs, r.predicted.ttftMs));
  const tpotWithin = within((r) => err(r.measured.tpotP50Ms, r.predicted.tpotP50Ms));
  io.log(
    `\nSigned error of the prediction over ${rows.length} requests, each predicted only from what the device had ` +
      `learned before it: TTFT ${ttft}, ${ttftWithin}/${rows.length} within 25%. ` +
      `TPOT p50 ${tpot}, ${tpotWithin}/${rows.length} within 25%.`,
  );
  io.log(
    "This is the only check of the simulation's rates and timing against real inference (llama.cpp); the live replay " +
      "runs the simulated engine, whose timing is the model's own.",
  );
}
