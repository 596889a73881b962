/** `pdd bench trace`: the trace simulation that compares the planner with fixed choices, and its live and llama.cpp cross-checks. */
import { writeFileSync } from "node:fs";
import {
  batchingComparison,
  CLOUD_GPU,
  NO_BATCHING,
  VLLM_H100_8B,
  crossCheck,
  DEFAULT_LIVE,
  liveMarkdown,
  markdown,
  median,
  PROFILES,
  readTrace,
  replayLive,
  SHAPES,
  synthesize,
  runTraceBench,
  TraceError,
  writePlots,
} from "../bench/index.js";
import { choiceFlag, intFlag, numFlag, parseFlags, UsageError, type Io, type Run } from "./kit.js";

export const runBenchTrace: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
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
  });
  if (!values.trace === !values.shape)
    throw new UsageError(
      `give one of --trace FILE (an Azure LLM inference CSV trace) or --shape ${SHAPES.map((x) => x.name).join("|")}`,
    );
  const real = values.real === undefined ? 0 : intFlag("real", values.real, 20, 1, 1000);
  const rtts = (values["rtt-ms"] ?? "20,50,150").split(",").map((x) => numFlag("rtt-ms", x, 0, true));
  const minRatio = numFlag("refine-min-ratio", values["refine-min-ratio"], 0.5);
  if (minRatio > 1) throw new UsageError("--refine-min-ratio must be in (0, 1]");
  const jitter = numFlag("jitter", values.jitter, 0.1, true);
  if (jitter >= 1) throw new UsageError("--jitter must be below 1");
  const profile =
    PROFILES[choiceFlag("device-profile", values["device-profile"], ["phone", "phone-npu"] as const, "phone")]!;
  const live = values.live === undefined ? 0 : intFlag("live", values.live, 200, 1, 100_000);
  const liveModes = (values["live-modes"] ?? "device-only,cloud-only,pd")
    .split(",")
    .map((m) => choiceFlag("live-modes", m, ["device-only", "cloud-only", "pd"] as const, "pd"));
  const batching = { none: NO_BATCHING, "vllm-h100": VLLM_H100_8B }[
    choiceFlag("batching", values.batching, ["vllm-h100", "none"] as const, "vllm-h100")
  ];
  const transport = choiceFlag("transport", values.transport, ["ws", "grpc", "webtransport"] as const, "ws");
  const limit = intFlag("limit", values.limit, 5000, 1, 10_000_000);
  const shape = values.shape
    ? SHAPES.find(
        (x) =>
          x.name ===
          choiceFlag(
            "shape",
            values.shape,
            SHAPES.map((x) => x.name),
            SHAPES[0]!.name,
          ),
      )
    : undefined;
  let trace;
  try {
    trace = shape
      ? synthesize(shape, limit, intFlag("seed", values.seed, 1, 0, 2 ** 31))
      : readTrace(values.trace!, limit);
  } catch (e) {
    if (e instanceof TraceError) throw new UsageError(e.message);
    throw e;
  }
  const source = shape ? `the synthetic shape ${shape.name} (${shape.about})` : values.trace!;
  const base = {
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
    batching,
    maxCloudBudget: intFlag("max-cloud-budget", values["max-cloud-budget"], 256, 1, 1 << 20),
  };
  const t0 = performance.now();
  const bar = (done: number, total: number) => {
    const w = 30;
    const f = Math.round((w * done) / total);
    io.progress(`\r[${"#".repeat(f)}${" ".repeat(w - f)}] ${Math.round((100 * done) / total)}%`);
  };
  const rows = runTraceBench(trace, base, rtts, bar);
  io.progress("\r\x1b[K");
  io.log(`# Trace simulation: ${trace.length} requests from ${source}\n`);
  io.log(
    `Cloud: ${CLOUD_GPU.name}, ${base.capacity} concurrent sequences (${CLOUD_GPU.source}). Device: ${base.device.name}, prefill ${base.device.prefillTokPerS} tok/s, decode ${base.device.decodeTokPerS} tok/s (${base.device.source}).`,
  );
  io.log(
    `Target TPOT ${base.targetTpotMs} ms (a stall is a gap over ${2 * base.targetTpotMs} ms); ${base.bandwidthMbps} Mbit/s; RTT jitter ±${base.jitter * 100}% (seed ${base.seed}); arrivals × ${base.timeScale}; refinement ratio ≥ ${minRatio}.\n`,
  );
  io.log(
    `Cloud batching: ${batching === NO_BATCHING ? "none: every sequence decodes at the single-stream rate" : `each sequence decodes at the single-stream rate × the measured slowdown at its batch size (${batching.name}; ${batching.source}; applied to the RTX 4090's rate, an assumption)`}. Each request is served at the batch it joins. The cloud grants at most ${base.maxCloudBudget} tokens a P/D request (max_cloud_token_budget).\n`,
  );
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
    const slice = trace.slice(0, live).map((r) => ({
      ...r,
      promptTokens: Math.min(r.promptTokens, intFlag("max-prompt", values["max-prompt"], 4096, 2, 131_072)),
      answerTokens: Math.min(r.answerTokens, intFlag("max-answer", values["max-answer"], 512, 1, 1 << 20)),
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
      onProgress: bar,
    };
    const runs = [];
    const t1 = performance.now();
    for (const mode of liveModes) runs.push(await replayLive(slice, mode, c));
    io.progress("\r\x1b[K");
    io.log(
      `\n## Live replay: ${slice.length} trace requests through the real stack (${((slice.at(-1)!.atMs * c.arrivalScale) / 1000).toFixed(0)} s of arrivals, ${((performance.now() - t1) / 1000).toFixed(0)} s in all)\n`,
    );
    io.log(
      `Reference cloud (${c.capacity} sequences, simulated ${c.cloud.name}) and one reference device per phone (simulated ${c.device.name}), ${transport} through the network emulator (RTT ${c.rttMs} ms, ${c.bandwidthMbps} Mbit/s); prompts ≤ ${values["max-prompt"] ?? 4096}, answers ≤ ${values["max-answer"] ?? 512} tokens. "model" is the token-level simulation of the same requests.\n`,
    );
    io.log(liveMarkdown(runs, c));
    if (values.json) {
      json.live = runs.map((r) => ({
        mode: r.mode,
        cloud: r.cloud,
        errors: r.errors,
        fallbacks: r.fallbacks,
        fallbackReasons: r.fallbackReasons,
        devices: r.devices,
        wallMs: r.wallMs,
        measured: r.measured.map((m) => ({ ttftMs: m.ttftMs, maxGapMs: Math.max(0, ...m.gaps) })),
        predicted: r.predicted.map((m) => ({ ttftMs: m.ttftMs, maxGapMs: Math.max(0, ...m.gaps) })),
      }));
      writeFileSync(values.json, JSON.stringify(json, null, 2));
    }
  }
  return 0;
};

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
  io.log(
    `\n## Cross-check: ${rows.length} trace requests through the llama.cpp peers (embedded model, WebSocket, prompts ≤ ${o.maxPromptTokens} and answers ≤ ${o.maxAnswerTokens} tokens, device emulating +${o.emulate.prefillMsPerToken} ms/prefill token and +${o.emulate.decodeMsPerToken} ms/decoded token, target TPOT ${o.targetTpotMs} ms)\n`,
  );
  io.log(
    `Measured rates fed to the simulation: cloud prefill ${rates.cloudPrefillContended!.toFixed(0)} tok/s beside the device's prefill (${rates.cloudPrefill!.toFixed(0)} alone), decode ${rates.cloudDecode!.toFixed(0)} tok/s; device prefill ${rates.devicePrefill!.toFixed(0)} tok/s, decode ${rates.deviceDecode!.toFixed(1)} tok/s; RTT ${rates.rttMs!.toFixed(2)} ms plus ${rates.overheadMs!.toFixed(2)} ms of fixed per-request cost (from a two-token prompt). All measured before the slice, on other requests.\n`,
  );
  io.log(
    "| prompt | answer | TTFT measured ms | predicted | error | TPOT p50 measured ms | predicted | error | cloud tokens measured | predicted |",
  );
  io.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    io.log(
      `| ${r.promptTokens} | ${r.answerTokens} | ${r.measured.ttftMs.toFixed(1)} | ${r.predicted.ttftMs.toFixed(1)} | ${(100 * err(r.measured.ttftMs, r.predicted.ttftMs)).toFixed(0)}% | ${r.measured.tpotP50Ms.toFixed(1)} | ${r.predicted.tpotP50Ms.toFixed(1)} | ${(100 * err(r.measured.tpotP50Ms, r.predicted.tpotP50Ms)).toFixed(0)}% | ${r.measured.cloudTokens} | ${r.predicted.cloudTokens} |`,
    );
  }
  // Signed errors (predicted − measured) / measured: their spread is the noise, their median the bias.
  const signed = (f: (r: (typeof rows)[number]) => [number, number]) =>
    rows.map((r) => (f(r)[1] - f(r)[0]) / Math.max(1e-9, f(r)[0])).sort((a, b) => a - b);
  const spread = (xs: number[]) => {
    const at = (p: number) => xs[Math.min(xs.length - 1, Math.floor(p * (xs.length - 1)))]!;
    const pc = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(0)}%`;
    return `p10 ${pc(at(0.1))}, median ${pc(at(0.5))}, p90 ${pc(at(0.9))}; |error| median ${(100 * med(xs.map(Math.abs))).toFixed(0)}%`;
  };
  io.log(
    `\nSigned error of the prediction over ${rows.length} requests (each predicted only from what the device had learned before it): TTFT ${spread(signed((r) => [r.measured.ttftMs, r.predicted.ttftMs]))}, ${within((r) => err(r.measured.ttftMs, r.predicted.ttftMs))}/${rows.length} within 25%. TPOT p50 ${spread(signed((r) => [r.measured.tpotP50Ms, r.predicted.tpotP50Ms]))}, ${within((r) => err(r.measured.tpotP50Ms, r.predicted.tpotP50Ms))}/${rows.length} within 25%.`,
  );
  io.log(
    "This is the only check of the simulation's rates and timing against real inference (llama.cpp); the live replay runs the simulated engine, whose timing is the model's own.",
  );
}
