/** `pdd bench trace`: device-only, cloud-only and P/D-Device side by side over a trace, at several RTTs. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NO_BATCHING, type BatchingModel } from "./batching.js";
import { simulate, type Mode, type RequestResult, type SimConfig } from "./simulate.js";
import type { LiveRun } from "./live.js";
import type { TraceRequest } from "./trace.js";

export interface Row {
  rttMs: number;
  mode: string;
  ttft: { p50: number; p90: number; p99: number };
  tpot: { max: number; p99: number };
  stalls: number;
  stalledRequests: number;
  cloudMsPerRequest: number;
  cloudTokensPerRequest: number;
  /** Requests per second the cloud sustains at saturation: capacity / mean sequence time. */
  saturationRps: number;
  /**
   * P/D rows: the cloud-time gain per request against cloud-only (quantiles,
   * and the share of requests at 15× or more), and its ceiling: cloud-only
   * time over the cloud's prefill alone (a P/D cloud that decoded nothing).
   */
  perRequestGain?: { p50: number; p90: number; max: number; atLeast15: number; ceilingP50: number };
}

export const MODES: [string, Mode][] = [
  ["device-only", { kind: "device-only" }],
  ["cloud-only", { kind: "cloud-only" }],
  ["P/D planner", { kind: "pd", budget: "planner", controller: true }],
  ["P/D planner, no speed controller", { kind: "pd", budget: "planner", controller: false }],
  ["P/D fixed budget 8", { kind: "pd", budget: 8, controller: true }],
  ["P/D fixed budget 32", { kind: "pd", budget: 32, controller: true }],
  ["P/D fixed budget 128", { kind: "pd", budget: 128, controller: true }],
];

function q(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))]!;
}

export function summarize(rttMs: number, mode: string, rs: RequestResult[], c: SimConfig): Row {
  const ttft = rs.map((r) => r.ttftMs).sort((a, b) => a - b);
  const gaps = rs.flatMap((r) => r.gaps).sort((a, b) => a - b);
  const stallAt = 2 * c.targetTpotMs;
  const stalls = rs.reduce((n, r) => n + r.gaps.filter((g) => g > stallAt).length, 0);
  const cloudMs = rs.reduce((n, r) => n + r.cloudMs, 0) / rs.length;
  return {
    rttMs,
    mode,
    ttft: { p50: round(q(ttft, 0.5)), p90: round(q(ttft, 0.9)), p99: round(q(ttft, 0.99)) },
    tpot: { max: round(gaps[gaps.length - 1] ?? 0), p99: round(q(gaps, 0.99)) },
    stalls,
    stalledRequests: rs.filter((r) => r.gaps.some((g) => g > stallAt)).length,
    cloudMsPerRequest: round(cloudMs),
    cloudTokensPerRequest: round(rs.reduce((n, r) => n + r.cloudTokens, 0) / rs.length),
    saturationRps: cloudMs > 0 ? round((1000 * c.capacity) / cloudMs) : Infinity,
  };
}

export function runTraceBench(
  trace: TraceRequest[],
  base: Omit<SimConfig, "rttMs">,
  rtts: number[],
  onProgress?: (done: number, total: number) => void,
): Row[] {
  const rows: Row[] = [];
  const total = rtts.length * MODES.length;
  let done = 0;
  for (const rttMs of rtts) {
    let cloudOnly: RequestResult[] | undefined;
    for (const [name, mode] of MODES) {
      const c = { ...base, rttMs };
      const results = simulate(trace, mode, c, (n) => onProgress?.(done + n / trace.length, total));
      const row = summarize(rttMs, name, results, c);
      if (mode.kind === "cloud-only") cloudOnly = results;
      if (mode.kind === "pd" && cloudOnly) row.perRequestGain = perRequestGain(trace, cloudOnly, results, c);
      rows.push(row);
      onProgress?.(++done, total);
    }
  }
  return rows;
}

/** P/D's cloud time per request against cloud-only's for the same requests, and its ceiling (a cloud that only prefilled). */
export function perRequestGain(
  trace: TraceRequest[],
  cloudOnly: RequestResult[],
  pd: RequestResult[],
  c: Pick<SimConfig, "cloud">,
): NonNullable<Row["perRequestGain"]> {
  const gains = pd.map((r, i) => cloudOnly[i]!.cloudMs / Math.max(1e-9, r.cloudMs)).sort((a, b) => a - b);
  const ceiling = trace
    .map((r, i) => cloudOnly[i]!.cloudMs / ((1000 * r.promptTokens) / c.cloud.prefillTokPerS))
    .sort((a, b) => a - b);
  return {
    p50: round(q(gains, 0.5)),
    p90: round(q(gains, 0.9)),
    max: round(gains[gains.length - 1] ?? 0),
    atLeast15: gains.filter((g) => g >= 15).length / gains.length,
    ceilingP50: round(q(ceiling, 0.5)),
  };
}

export function markdown(rows: Row[]): string {
  const out: string[] = [];
  for (const rtt of [...new Set(rows.map((r) => r.rttMs))]) {
    const rs = rows.filter((r) => r.rttMs === rtt);
    const dev = rs.find((r) => r.mode === "device-only")!;
    const cloud = rs.find((r) => r.mode === "cloud-only")!;
    out.push(`### RTT ${rtt} ms`, "");
    out.push(
      "| mode | TTFT p50 ms | p90 | p99 | TTFT p50 vs device-only | TPOT max ms | TPOT p99 | stalls " +
        "(requests) | cloud ms/req | cloud tokens/req | saturation req/s | vs cloud-only |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (const r of rs) {
      const cut = 1 - r.ttft.p50 / dev.ttft.p50;
      const ttftCut = r.mode === "device-only" ? "—" : cut >= 0 ? `${pct(cut)} lower` : `${pct(-cut)} higher`;
      const gain = r.mode === "device-only" ? "—" : `${(r.saturationRps / cloud.saturationRps).toFixed(2)}×`;
      out.push(
        `| ${r.mode} | ${r.ttft.p50} | ${r.ttft.p90} | ${r.ttft.p99} | ${ttftCut} | ${r.tpot.max} | ` +
          `${r.tpot.p99} | ${r.stalls} (${r.stalledRequests}) | ${r.mode === "device-only" ? "0" : r.cloudMsPerRequest} ` +
          `| ${r.cloudTokensPerRequest} | ${r.mode === "device-only" ? "—" : r.saturationRps} | ${gain} ` +
          `|`,
      );
    }
    out.push("");
    const pd = rs.find((r) => r.mode === "P/D planner")?.perRequestGain;
    if (pd) {
      out.push(
        `Per request, P/D planner against cloud-only: cloud time ${pd.p50}× lower at the median, ${pd.p90}× ` +
          `at p90, ${pd.max}× at most; ${pct(pd.atLeast15)} of requests at 15× or more. Ceiling at the ` +
          `median, for a cloud that only prefilled: ${pd.ceilingP50}× (the median gain is ${pct(pd.p50 / pd.ceilingP50)} of it).`,
        "",
      );
    }
  }
  return out.join("\n");
}

/**
 * Cloud-only against the P/D planner with and without batched decoding
 * (batching.ts), at one RTT: what the batching model changes in the cloud's
 * cost and in P/D's gain.
 */
export function batchingComparison(
  trace: TraceRequest[],
  base: Omit<SimConfig, "rttMs">,
  rttMs: number,
  models: BatchingModel[],
): string[] {
  const out = [
    "| cloud batching model | cloud-only ms/req | P/D ms/req | saturation gain | per-request gain p50 | ceiling p50 | " +
      "share of ceiling | P/D TPOT max ms | stalls |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const m of models) {
    const rows = runTraceBench(trace, { ...base, batching: m }, [rttMs]).filter(
      (r) => r.mode === "cloud-only" || r.mode === "P/D planner",
    );
    const [only, pd] = rows as [Row, Row];
    const g = pd.perRequestGain!;
    out.push(
      `| ${m === NO_BATCHING ? "none" : m.name} | ${only.cloudMsPerRequest} | ${pd.cloudMsPerRequest} | ` +
        `${(pd.saturationRps / only.saturationRps).toFixed(2)}× | ${g.p50}× | ${g.ceilingP50}× | ` +
        `${pct(g.p50 / g.ceilingP50)} | ${pd.tpot.max} | ${pd.stalls} |`,
    );
  }
  return out;
}

/** SVG plots: TTFT CDF at one RTT, throughput against RTT, and one request's display timeline around the handover. */
export function writePlots(
  dir: string,
  trace: TraceRequest[],
  rows: Row[],
  base: Omit<SimConfig, "rttMs">,
  rtt: number,
): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const c = { ...base, rttMs: rtt };
  // 1. TTFT CDF.
  const series = (["device-only", "cloud-only", "P/D planner"] as const).map((name) => {
    const mode = MODES.find(([n]) => n === name)![1];
    const ttft = simulate(trace, mode, c)
      .map((r) => r.ttftMs)
      .sort((a, b) => a - b);
    return {
      name,
      points: ttft.map((t, i) => [Math.log10(Math.max(1, t)), (i + 1) / ttft.length] as [number, number]),
    };
  });
  files.push(
    save(
      dir,
      "ttft-cdf.svg",
      svgPlot(`TTFT CDF, RTT ${rtt} ms (x: log10 ms)`, series, "log10 TTFT (ms)", "fraction of requests"),
    ),
  );
  // 2. Throughput against RTT.
  const modes = ["cloud-only", "P/D planner", "P/D fixed budget 32"];
  files.push(
    save(
      dir,
      "throughput-vs-rtt.svg",
      svgPlot(
        "Cloud throughput at saturation",
        modes.map((m) => ({
          name: m,
          points: rows.filter((r) => r.mode === m).map((r) => [r.rttMs, r.saturationRps] as [number, number]),
        })),
        "RTT (ms)",
        "requests/s",
      ),
    ),
  );
  // 3. A request's TPOT timeline around the handover, with and without the controller.
  const median = [...trace].sort((a, b) => a.promptTokens - b.promptTokens)[Math.floor(trace.length / 2)]!;
  const one = [{ ...median, atMs: 0 }];
  const timeline = (["P/D planner", "P/D planner, no speed controller"] as const).map((name) => {
    const r = simulate(one, MODES.find(([n]) => n === name)![1], c)[0]!;
    return {
      name: `${name} (takeover at ${r.takeover})`,
      points: r.gaps.map((g, i) => [i + 1, g] as [number, number]),
    };
  });
  files.push(
    save(
      dir,
      "tpot-timeline.svg",
      svgPlot(
        `TPOT per token, one request (${median.promptTokens} prompt tokens), RTT ${rtt} ms`,
        timeline,
        "token index",
        "gap before the token (ms)",
      ),
    ),
  );
  return files;
}

function save(dir: string, name: string, svg: string): string {
  const path = join(dir, name);
  writeFileSync(path, svg);
  return path;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

function svgPlot(
  title: string,
  series: { name: string; points: [number, number][] }[],
  xLabel: string,
  yLabel: string,
): string {
  const W = 720;
  const H = 420;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const all = series.flatMap((s) => s.points);
  const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  const [y0, y1] = [Math.min(0, ...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const ticks = (a: number, b: number) => Array.from({ length: 5 }, (_, i) => a + ((b - a) * i) / 4);
  const lines = series.map((s, i) => {
    const step = Math.max(1, Math.floor(s.points.length / 600)); // at most ~600 points a line
    const d = s.points
      .filter((_, j) => j % step === 0 || j === s.points.length - 1)
      .map((p, j) => `${j === 0 ? "M" : "L"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`)
      .join("");
    return (
      `<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/><text x="${m.l + 10}" ` +
      `y="${m.t + 16 + 16 * i}" fill="${COLORS[i % COLORS.length]}" font-size="12">${esc(s.name)}</text>`
    );
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" ` +
      `y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    ...ticks(x0, x1).map(
      (x) => `<text x="${sx(x)}" y="${H - m.b + 16}" text-anchor="middle" font-size="11">${fmt(x)}</text>`,
    ),
    ...ticks(y0, y1).map(
      (y) => `<text x="${m.l - 6}" y="${sy(y) + 4}" text-anchor="end" font-size="11">${fmt(y)}</text>`,
    ),
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${H / 2})">${esc(yLabel)}</text>`,
    ...lines,
    `</svg>`,
  ].join("\n");
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const fmt = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2));
const round = (x: number) => Math.round(x * 10) / 10;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The live replay (live.ts): each mode measured through the real stack beside the model's prediction for the same requests. */
export function liveMarkdown(runs: LiveRun[], c: { targetTpotMs: number; capacity: number; rttMs: number }): string {
  const out: string[] = [];
  const rows = runs.map((r) => ({
    run: r,
    live: summarize(c.rttMs, r.mode, r.measured, c as SimConfig),
    model: summarize(c.rttMs, r.mode, r.predicted, c as SimConfig),
  }));
  out.push(
    "| mode | source | TTFT p50 ms | p90 | p99 | TPOT p99 ms | max | stalls (requests) | cloud tokens/req | cloud ms/req | saturation req/s | errors |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const { run, live, model } of rows) {
    for (const [src, r] of [
      ["live", live],
      ["model", model],
    ] as const) {
      const cloud = run.mode === "device-only";
      out.push(
        `| ${run.mode} | ${src} | ${r.ttft.p50} | ${r.ttft.p90} | ${r.ttft.p99} | ${r.tpot.p99} | ${r.tpot.max} ` +
          `| ${r.stalls} (${r.stalledRequests}) | ${cloud ? "—" : r.cloudTokensPerRequest} | ${cloud ? "—" : r.cloudMsPerRequest} ` +
          `| ${cloud ? "—" : r.saturationRps} | ${src === "live" ? run.errors.length + run.fallbacks : ""} ` +
          `|`,
      );
    }
  }
  out.push("");
  for (const { run } of rows) {
    const ttftErr = run.measured.map((m, i) => relErr(m.ttftMs, run.predicted[i]!.ttftMs));
    const tpotErr = run.measured
      .map((m, i) => relErr(median(m.gaps), median(run.predicted[i]!.gaps)))
      .filter(Number.isFinite);
    const errors = run.errors.length ? `; errors: ${run.errors.slice(0, 3).join("; ")}` : "";
    const fallbacks = run.fallbacks
      ? `; answered alone after a cloud failure: ${run.fallbackReasons.slice(0, 3).join("; ")}`
      : "";
    out.push(
      `- ${run.mode}: per request, TTFT median error ${pct(median(ttftErr))} (${ttftErr.filter((e) => e <= 0.25).length}/${ttftErr.length} ` +
        `within 25%), TPOT p50 median error ${pct(median(tpotErr))} (${tpotErr.filter((e) => e <= 0.25).length}/${tpotErr.length} ` +
        `within 25%); ${run.devices} devices, ${(run.wallMs / 1000).toFixed(0)} s, event loop delay ` +
        `p99 ${run.loop.p99DelayMs.toFixed(1)} ms / max ${run.loop.maxDelayMs.toFixed(0)} ms, longest ` +
        `GC pause ${run.loop.maxGcMs.toFixed(0)} ms${errors}${fallbacks}.`,
    );
  }
  const get = (m: string) => rows.find((r) => r.run.mode === m)?.live;
  const [dev, cloud, pd] = [get("device-only"), get("cloud-only"), get("pd")];
  if (dev && pd)
    out.push(
      `- Live TTFT with P/D: ${pct(1 - pd.ttft.p50 / dev.ttft.p50)} lower than device-only at p50, ${pct(1 - pd.ttft.p99 / dev.ttft.p99)} at p99.`,
    );
  if (cloud && pd)
    out.push(
      `- Live cloud throughput at saturation with P/D: ${(pd.saturationRps / cloud.saturationRps).toFixed(2)}× ` +
        `cloud-only (${pd.cloudMsPerRequest} vs ${cloud.cloudMsPerRequest} sequence-ms per request).`,
    );
  if (pd) out.push(`- Live P/D max TPOT ${pd.tpot.max} ms, ${pd.stalls} stalls (gaps over ${2 * c.targetTpotMs} ms).`);
  out.push("", ...VALIDATION_NOTE);
  return out.join("\n");
}

/**
 * What the live replay shows and what it cannot: it runs the simulated engine,
 * which charges 1000/rate ms per token (the model's own formulas), and the
 * same planner and speed controller as the model, so agreement on timing is
 * circular; "live saturation" is capacity over the engine's charged time.
 */
export const VALIDATION_NOTE = [
  "What the live replay validates independently of the model: the transports and the network emulator, the cloud's " +
    "scheduler and sequence pool, the event loop under many devices, the protocol (every request answered, every token " +
    "shown once, takeover and End in order, fallbacks counted as errors above) and answer completeness.",
  "What it does not validate: rates and timing. The simulated engine charges 1000/rate ms per token, the model's own " +
    "formulas, and the planner and speed controller are the same code on both sides, so TTFT/TPOT agreement only " +
    "bounds transport, scheduling and event-loop overhead. Live saturation is capacity over the engine's charged " +
    "sequence time, not a measured saturation. Only the llama.cpp cross-check (--real N) compares the model with " +
    "real inference.",
];

/** The lower median of the numbers that are not NaN; `ifEmpty` when there are none. */
export function median(xs: readonly number[], ifEmpty = Number.NaN): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : ifEmpty;
}
const relErr = (measured: number, predicted: number) =>
  Math.abs(measured - predicted) / Math.max(1e-9, Math.abs(predicted));
