/** `pdd plan` and `pdd bench trace`: the planner, and the trace simulation that compares it with fixed choices. */
import { writeFileSync } from "node:fs";
import { choiceFlag, intFlag, numberFlag, parseFlags, UsageError, type Command } from "./kit.js";
import { plan } from "../reference-device/planner.js";
import { liveMarkdown, markdown, median, runTraceBench, writePlots } from "../bench/sim/bench.js";
import { DEFAULT_LIVE, replayLive } from "../bench/sim/live.js";
import { crossCheck } from "../bench/sim/crosscheck.js";
import { CLOUD_GPU, PHONE, PROFILES } from "../bench/sim/profiles.js";
import { readTrace, TraceError } from "../bench/sim/trace.js";

/** A positive (or ≥ 0 with `zero`) number flag. */
/** A non-negative number flag; positive unless `zero`. */
const numFlag = (name: string, value: string | undefined, fallback: number, zero = false) =>
  numberFlag(name, value, fallback, 0, Number.POSITIVE_INFINITY, !zero);

export const planCommand: Command = {
  name: "plan",
  summary: "choose the cloud budget, pacing, refinement ratio and KV transfer for one request, with predictions",
  usage:
    "pdd plan --prompt-tokens N [--answer-tokens N] [--rtt-ms MS] [--bandwidth-mbps M] [--cloud-queue-ms MS]\n" +
    "         [--cloud-prefill T/S] [--cloud-decode T/S] [--device-prefill T/S] [--device-decode T/S] [--tpot-ms MS]\n" +
    "         [--max-budget N] [--kv-bytes-per-token B] [--refine-min-ratio R] [--explain] [--json]\n" +
    "  Rates default to the phone and cloud-GPU profiles of the trace benchmark (published llama.cpp measurements).",
  async run(argv) {
    const { values } = parseFlags(argv, {
      "prompt-tokens": { type: "string" },
      "answer-tokens": { type: "string" },
      "rtt-ms": { type: "string" },
      "bandwidth-mbps": { type: "string" },
      "cloud-queue-ms": { type: "string" },
      "cloud-prefill": { type: "string" },
      "cloud-decode": { type: "string" },
      "device-prefill": { type: "string" },
      "device-decode": { type: "string" },
      "tpot-ms": { type: "string" },
      "max-budget": { type: "string" },
      "kv-bytes-per-token": { type: "string" },
      "refine-min-ratio": { type: "string" },
      explain: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values["prompt-tokens"] === undefined) throw new UsageError("--prompt-tokens N is required");
    const kvBytes = numFlag("kv-bytes-per-token", values["kv-bytes-per-token"], 0, true);
    const minRatio = numFlag("refine-min-ratio", values["refine-min-ratio"], 1);
    if (minRatio > 1) throw new UsageError("--refine-min-ratio must be in (0, 1]");
    const p = plan({
      promptTokens: intFlag("prompt-tokens", values["prompt-tokens"], 0, 1, 10_000_000),
      answerTokens: intFlag("answer-tokens", values["answer-tokens"], 256, 1, 10_000_000),
      rttMs: numFlag("rtt-ms", values["rtt-ms"], 50, true),
      bandwidthMbps: numFlag("bandwidth-mbps", values["bandwidth-mbps"], 100),
      cloud: {
        queueMs: numFlag("cloud-queue-ms", values["cloud-queue-ms"], 0, true),
        prefillTokPerS: numFlag("cloud-prefill", values["cloud-prefill"], CLOUD_GPU.prefillTokPerS),
        decodeTokPerS: numFlag("cloud-decode", values["cloud-decode"], CLOUD_GPU.decodeTokPerS),
      },
      device: {
        prefillTokPerS: numFlag("device-prefill", values["device-prefill"], PHONE.prefillTokPerS),
        decodeTokPerS: numFlag("device-decode", values["device-decode"], PHONE.decodeTokPerS),
      },
      targetTpotMs: numFlag("tpot-ms", values["tpot-ms"], 50),
      budget: { max: intFlag("max-budget", values["max-budget"], 256, 1, 1 << 20) },
      kv: { allowed: kvBytes > 0, bytesPerToken: kvBytes },
      refine: { allowed: minRatio < 1, minRatio },
    });
    if (values.json) {
      console.log(JSON.stringify(p, null, 2));
      return 0;
    }
    const c = p.chosen;
    console.log(
      `mode ${p.mode}; ${c.kv ? "KV transfer" : "recompute"}; refinement ratio ${c.ratio}; cloud budget ${c.budget} tokens; display every ${p.pacing.intervalMs} ms; takeover at token ${c.takeoverIndex}`,
    );
    console.log(
      `predicted: TTFT ${c.ttftMs} ms (device alone ${Math.round(p.deviceOnly.ttftMs)} ms), max TPOT ${c.maxTpotMs} ms, cloud time ${c.cloudCostMs} ms (cloud alone ${Math.round(p.cloudOnly.cloudCostMs)} ms)`,
    );
    if (values.explain) console.log(`\n${p.explanation.join("\n")}`);
    return 0;
  },
};

export const benchTraceCommand: Command = {
  name: "bench trace",
  summary: "simulate a request trace: device-only, cloud-only and P/D-Device side by side at several RTTs",
  usage:
    "pdd bench trace --trace FILE [--limit N] [--rtt-ms 20,50,150] [--capacity N] [--time-scale X] [--tpot-ms MS]\n" +
    "                [--bandwidth-mbps M] [--refine-min-ratio R] [--jitter F] [--seed N] [--json FILE] [--plots DIR] [--real N]\n" +
    "                [--device-prefill T/S] [--device-decode T/S] [--device-profile phone|phone-npu]\n" +
    "                [--live N [--transport ws|grpc|webtransport] [--live-rtt-ms MS] [--live-modes pd,cloud-only,device-only] [--max-prompt N] [--max-answer N]]\n" +
    "  --real N: also run the first N requests through the llama.cpp peers and compare with the simulation.\n" +
    "  --live N: also replay the first N requests through the real cloud, devices, binding and an emulated network,\n" +
    "            with simulated engines on the same profiles, at the trace's arrival times (× --time-scale),\n" +
    "            and compare each request with the model. Prompts and answers are clipped to --max-prompt/--max-answer.\n" +
    "  FILE: Azure LLM inference CSV (TIMESTAMP,ContextTokens,GeneratedTokens).",
  async run(argv) {
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
    });
    if (!values.trace) throw new UsageError("--trace FILE is required (an Azure LLM inference CSV trace)");
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
    const transport = choiceFlag("transport", values.transport, ["ws", "grpc", "webtransport"] as const, "ws");
    let trace;
    try {
      trace = readTrace(values.trace, intFlag("limit", values.limit, 5000, 1, 10_000_000));
    } catch (e) {
      if (e instanceof TraceError) throw new UsageError(e.message);
      throw e;
    }
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
    };
    const t0 = performance.now();
    const bar = (done: number, total: number) => {
      if (!process.stderr.isTTY) return;
      const w = 30;
      const f = Math.round((w * done) / total);
      process.stderr.write(`\r[${"#".repeat(f)}${" ".repeat(w - f)}] ${Math.round((100 * done) / total)}%`);
    };
    const rows = runTraceBench(trace, base, rtts, bar);
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    console.log(`# Trace simulation: ${trace.length} requests from ${values.trace}\n`);
    console.log(
      `Cloud: ${CLOUD_GPU.name}, ${base.capacity} concurrent sequences (${CLOUD_GPU.source}). Device: ${base.device.name}, prefill ${base.device.prefillTokPerS} tok/s, decode ${base.device.decodeTokPerS} tok/s (${base.device.source}).`,
    );
    console.log(
      `Target TPOT ${base.targetTpotMs} ms (a stall is a gap over ${2 * base.targetTpotMs} ms); ${base.bandwidthMbps} Mbit/s; RTT jitter ±${base.jitter * 100}% (seed ${base.seed}); arrivals × ${base.timeScale}; refinement ratio ≥ ${minRatio}.\n`,
    );
    console.log(markdown(rows));
    console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const json: Record<string, unknown> = { config: { ...base, rtts, requests: trace.length }, rows };
    if (values.json) writeFileSync(values.json, JSON.stringify(json, null, 2));
    if (values.plots)
      for (const f of writePlots(values.plots, trace, rows, base, rtts.includes(50) ? 50 : rtts[0]!))
        console.log(`wrote ${f}`);
    if (real > 0) await printCrossCheck(trace, real, bar);
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
        onProgress: bar,
      };
      const runs = [];
      const t1 = performance.now();
      for (const mode of liveModes) runs.push(await replayLive(slice, mode, c));
      if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
      console.log(
        `\n## Live replay: ${slice.length} trace requests through the real stack (${((slice.at(-1)!.atMs * c.arrivalScale) / 1000).toFixed(0)} s of arrivals, ${((performance.now() - t1) / 1000).toFixed(0)} s in all)\n`,
      );
      console.log(
        `Reference cloud (${c.capacity} sequences, simulated ${c.cloud.name}) and one reference device per phone (simulated ${c.device.name}), ${transport} through the network emulator (RTT ${c.rttMs} ms, ${c.bandwidthMbps} Mbit/s); prompts ≤ ${values["max-prompt"] ?? 4096}, answers ≤ ${values["max-answer"] ?? 512} tokens. "model" is the token-level simulation of the same requests.\n`,
      );
      console.log(liveMarkdown(runs, c));
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
  },
};

/** `--real N`: the first N requests through the llama.cpp peers, against the simulation's prediction for them. */
async function printCrossCheck(
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
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  const err = (m: number, p: number) => Math.abs(p - m) / Math.max(1e-9, m);
  const within = (f: (r: (typeof rows)[number]) => number) => rows.filter((r) => f(r) <= 0.25).length;
  const med = (xs: number[]) => median(xs, 0);
  console.log(
    `\n## Cross-check: ${rows.length} trace requests through the llama.cpp peers (embedded model, WebSocket, prompts ≤ ${o.maxPromptTokens} and answers ≤ ${o.maxAnswerTokens} tokens, device emulating +${o.emulate.prefillMsPerToken} ms/prefill token and +${o.emulate.decodeMsPerToken} ms/decoded token, target TPOT ${o.targetTpotMs} ms)\n`,
  );
  console.log(
    `Measured rates fed to the simulation: cloud prefill ${rates.cloudPrefillContended!.toFixed(0)} tok/s beside the device's prefill (${rates.cloudPrefill!.toFixed(0)} alone), decode ${rates.cloudDecode!.toFixed(0)} tok/s; device prefill ${rates.devicePrefill!.toFixed(0)} tok/s, decode ${rates.deviceDecode!.toFixed(1)} tok/s; RTT ${rates.rttMs!.toFixed(2)} ms plus ${rates.overheadMs!.toFixed(2)} ms of fixed per-request cost (from a two-token prompt). All measured before the slice, on other requests.\n`,
  );
  console.log(
    "| prompt | answer | TTFT measured ms | predicted | error | TPOT p50 measured ms | predicted | error | cloud tokens measured | predicted |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.promptTokens} | ${r.answerTokens} | ${r.measured.ttftMs.toFixed(1)} | ${r.predicted.ttftMs.toFixed(1)} | ${(100 * err(r.measured.ttftMs, r.predicted.ttftMs)).toFixed(0)}% | ${r.measured.tpotP50Ms.toFixed(1)} | ${r.predicted.tpotP50Ms.toFixed(1)} | ${(100 * err(r.measured.tpotP50Ms, r.predicted.tpotP50Ms)).toFixed(0)}% | ${r.measured.cloudTokens} | ${r.predicted.cloudTokens} |`,
    );
  }
  const ttftErr = rows.map((r) => err(r.measured.ttftMs, r.predicted.ttftMs));
  const tpotErr = rows.map((r) => err(r.measured.tpotP50Ms, r.predicted.tpotP50Ms));
  console.log(
    `\nTTFT: median error ${(100 * med(ttftErr)).toFixed(0)}%, ${within((r) => err(r.measured.ttftMs, r.predicted.ttftMs))}/${rows.length} within 25%. TPOT p50: median error ${(100 * med(tpotErr)).toFixed(1)}%, ${within((r) => err(r.measured.tpotP50Ms, r.predicted.tpotP50Ms))}/${rows.length} within 25%.`,
  );
}
