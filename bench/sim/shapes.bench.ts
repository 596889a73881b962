/**
 * `npm run bench:shapes [-- TRACE.csv]`: the P/D planner's TPOT bound on
 * several trace shapes, not only the one it was built beside. For each
 * synthetic shape (shapes.ts), and the Azure conversation trace when its path
 * is given, on both phone profiles at 50 ms RTT with batched cloud decoding
 * (batching.ts): max TPOT and stalls of every request, beside cloud-only;
 * without refinement and, at the 4096 cap, with refinement down to 0.5.
 *
 * The cloud's budget cap (max_cloud_token_budget) is printed with each row:
 * a request whose device needs longer to catch up than the cap's tokens last
 * at the target pace cannot be kept at the target by any plan within it.
 */
import { CLOUD_GPU, PHONE, PHONE_NPU } from "../../engine/index.js";
import { VLLM_H100_8B } from "./batching.js";
import { simulate, type RequestResult, type SimConfig } from "./simulate.js";
import { SHAPES, synthesize } from "./shapes.js";
import { readTrace, type TraceRequest } from "./trace.js";

const REQUESTS = Number(process.env.BENCH_SHAPE_REQUESTS ?? 4000);
const TARGET = 50;
const CAPACITY = Number(process.env.BENCH_SHAPE_CAPACITY ?? 32);
const traces: [string, TraceRequest[]][] = SHAPES.map((s) => [s.name, synthesize(s, REQUESTS, 1)]);
if (process.argv[2]) traces.push([`conversation (${process.argv[2]})`, readTrace(process.argv[2], REQUESTS)]);

const worst = (rs: RequestResult[]) => rs.reduce((m, r) => r.gaps.reduce((a, g) => Math.max(a, g), m), 0);
const stalled = (rs: RequestResult[]) => rs.filter((r) => r.gaps.some((g) => g > 2 * TARGET)).length;
const over = (rs: RequestResult[]) => rs.filter((r) => r.gaps.some((g) => g > TARGET + 1e-6)).length;
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))] ?? 0;

const rows: string[][] = [];
for (const [name, trace] of traces)
  for (const device of [PHONE, PHONE_NPU])
    for (const [cap, minRefineRatio] of [
      [256, 1],
      [4096, 1],
      [4096, 0.5],
    ] as const) {
      const c: SimConfig = {
        rttMs: 50,
        bandwidthMbps: 100,
        cloud: CLOUD_GPU,
        device,
        capacity: CAPACITY,
        targetTpotMs: TARGET,
        timeScale: 1,
        minRefineRatio: minRefineRatio,
        jitter: 0.1,
        seed: 1,
        batching: VLLM_H100_8B,
        maxCloudBudget: cap,
      };
      const pd = simulate(trace, { kind: "pd", budget: "planner", controller: true }, c);
      const only = simulate(trace, { kind: "cloud-only" }, c);
      rows.push([
        name,
        device.model,
        String(cap),
        minRefineRatio < 1 ? `≥ ${minRefineRatio}` : "none",
        `${q(
          trace.map((r) => r.promptTokens),
          0.5,
        )} / ${q(
          trace.map((r) => r.answerTokens),
          0.5,
        )}`,
        worst(pd).toFixed(1),
        `${stalled(pd)}`,
        `${over(pd)}`,
        worst(only).toFixed(1),
        `${over(only)}`,
      ]);
    }

const header = [
  "trace",
  "device",
  "budget cap",
  "refinement",
  "prompt / answer p50",
  "P/D TPOT max ms",
  "P/D stalled req",
];
header.push("P/D req over target", "cloud-only TPOT max ms", "cloud-only req over target");
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((x, i) => x.padEnd(widths[i]!)).join(" | ")} |`;
console.log(
  `P/D planner with the speed controller, ${REQUESTS} requests a trace, RTT 50 ms ±10%, target TPOT ${TARGET} ms (a stall: a gap over ${2 * TARGET} ms), ` +
    `cloud ${CLOUD_GPU.name} with ${CAPACITY} sequences and batched decoding (${VLLM_H100_8B.name}); refinement: the ` +
    `device keeps the prompt prefix it prefilled when the refined prompt comes\n`,
);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
