/**
 * `npm run bench:ceiling [-- TRACE.csv]`: P/D's per-request cloud-time gain
 * at the median as a share of its ceiling (cloud-only time over the cloud's
 * prefill alone: a P/D cloud that decoded nothing), on both phone profiles,
 * for each synthetic shape (shapes.ts) and the conversation trace when its
 * path is given. Each device is run, in the same process and on the same
 * requests, with no refinement, with refinement as the reference device did
 * before issue 18 (it started over on the refined prompt) and as it does now
 * (it keeps the prompt prefix it prefilled and prefills only the kept tokens
 * of the rest), beside the TPOT bound (max TPOT, stalled requests) of each.
 *
 * What sets the numbers: the simulation (simulate.ts) with the published
 * profiles, 50 ms RTT ±10%, 100 Mbit/s, 64 cloud sequences, batched cloud
 * decoding (batching.ts), the reference planner and speed controller; the
 * cloud's budget cap at 256 (the reference cloud's default) and 4096 (the cap
 * under which shapes.bench.ts shows the TPOT bound holding on every shape).
 */
import { CLOUD_GPU, PHONE, PHONE_NPU } from "../../engine/index.js";
import { perRequestGain } from "./bench.js";
import { VLLM_H100_8B } from "./batching.js";
import { simulate, type RequestResult, type SimConfig } from "./simulate.js";
import { SHAPES, synthesize } from "./shapes.js";
import { readTrace, type TraceRequest } from "./trace.js";

const REQUESTS = Number(process.env.BENCH_CEILING_REQUESTS ?? 5000);
const TARGET = 50;
const traces: [string, TraceRequest[]][] = SHAPES.map((s) => [s.name, synthesize(s, REQUESTS, 1)]);
if (process.argv[2]) traces.push(["conversation (Azure 2023)", readTrace(process.argv[2], REQUESTS)]);

/** How the device may use a refined prompt. */
const VARIANTS: [string, Pick<SimConfig, "minRefineRatio" | "refineKeepsPrefilled">][] = [
  ["no refinement", { minRefineRatio: 1 }],
  ["refine ≥ 0.5, starts over (before)", { minRefineRatio: 0.5, refineKeepsPrefilled: false }],
  ["refine ≥ 0.5, keeps its prefix (after)", { minRefineRatio: 0.5, refineKeepsPrefilled: true }],
  ["refine ≥ 0.35, keeps its prefix", { minRefineRatio: 0.35, refineKeepsPrefilled: true }],
];

const worst = (rs: RequestResult[]) => rs.reduce((m, r) => r.gaps.reduce((a, g) => Math.max(a, g), m), 0);
const stalled = (rs: RequestResult[]) => rs.filter((r) => r.gaps.some((g) => g > 2 * TARGET)).length;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? 0;

const CAPS = [256, 4096];
const header = ["trace", "device", "cloud-only TPOT max ms", "refinement"];
for (const cap of CAPS)
  header.push(`cap ${cap}: gain p50 / ceiling`, "share", "cloud tokens p50", "TPOT max ms, stalled req");
const rows: string[][] = [];
for (const [name, trace] of traces)
  for (const device of [PHONE, PHONE_NPU]) {
    const base: SimConfig = {
      rttMs: 50,
      bandwidthMbps: 100,
      cloud: CLOUD_GPU,
      device,
      capacity: 64,
      targetTpotMs: TARGET,
      timeScale: 1,
      minRefineRatio: 1,
      jitter: 0.1,
      seed: 1,
      batching: VLLM_H100_8B,
    };
    const only = simulate(trace, { kind: "cloud-only" }, base);
    for (const [variant, refine] of VARIANTS) {
      const row = [name, device.model, worst(only).toFixed(1), variant];
      for (const maxCloudBudget of CAPS) {
        const c = { ...base, ...refine, maxCloudBudget };
        const pd = simulate(trace, { kind: "pd", budget: "planner", controller: true }, c);
        const g = perRequestGain(trace, only, pd, c);
        row.push(`${g.p50}× / ${g.ceilingP50}×`, `${((100 * g.p50) / g.ceilingP50).toFixed(1)}%`);
        row.push(String(median(pd.map((r) => r.cloudTokens))), `${worst(pd).toFixed(1)}, ${stalled(pd)}`);
      }
      rows.push(row);
    }
  }

const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((x, i) => x.padEnd(widths[i]!)).join(" | ")} |`;
console.log(
  `P/D cloud time per request against cloud-only, at the median, as a share of its ceiling (cloud-only over the ` +
    `cloud's prefill alone). ${REQUESTS} requests a trace, RTT 50 ms ±10%, 100 Mbit/s, target TPOT ${TARGET} ms ` +
    `(a stall: a gap over ${2 * TARGET} ms), cloud ${CLOUD_GPU.name} with 64 sequences and batched decoding ` +
    `(${VLLM_H100_8B.name}), the cloud's budget cap (max_cloud_token_budget) at ${CAPS.join(" and ")}; simulation, not measurement.\n`,
);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
