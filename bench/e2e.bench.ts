/**
 * `npm run bench:e2e`: device-only, cloud-only and P/D-Device side by side on
 * the benchmark-size model (~86M parameters) with a long prompt, in one run.
 *
 * Setup, stated because it shapes the numbers: one 2-core machine; the cloud
 * engine has 2 threads, the device engine 1; both share the cores. The cloud
 * here is not much faster than the device, unlike a GPU cloud and a phone.
 * The device reaches the cloud through the network emulator (transports/
 * netem.ts: BENCH_RTT_MS, default 50, and BENCH_BANDWIDTH_MBPS, default 100;
 * 0 RTT for loopback). TTFT runs from generate(), on a connection each run's
 * device opened before: warm.
 */
import { availableParallelism } from "node:os";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice, type Report } from "../reference-device/index.js";
import { startNetem } from "../transports/index.js";

const PROMPT_TOKENS = Number(process.env.BENCH_PROMPT_TOKENS ?? 2048);
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 64);
const TPOT = Number(process.env.BENCH_TPOT_MS ?? 100);
const RTT = Number(process.env.BENCH_RTT_MS ?? 50);
const BANDWIDTH = Number(process.env.BENCH_BANDWIDTH_MBPS ?? 100);

const modelPath = ensureDefaultModel("bench", (f) =>
  process.stderr.write(`\rgenerating the bench model ${(f * 100).toFixed(0)}%`),
);
process.stderr.write("\n");
const deviceEngine = await Engine.load({ modelPath, threads: 1, sequences: 4, contextSize: 4096 });
const cloud = await startCloud({
  model: modelPath,
  threads: 2,
  sequences: 4,
  contextSize: 4096,
  logLevel: "warn",
  listen: { ws: "127.0.0.1:0" },
});
const netem = await startNetem({
  target: { port: Number(new URL(cloud.urls.ws!).port) },
  rttMs: RTT,
  bandwidthMbps: BANDWIDTH,
});
const cloudUrl = netem.via(cloud.urls.ws!);
const words = "the cloud prefills the long prompt fast while the device decodes the answer on its own".split(" ");
const parts: string[] = [];
while (deviceEngine.tokenize(`${parts.join(" ")}.`).length < PROMPT_TOKENS)
  parts.push(words[parts.length % words.length]!);
const prompt = `${parts.join(" ")}.`;
const promptTokens = deviceEngine.tokenize(prompt).length;

const decodedBefore = async () => (await cloud.metrics.decodedTokens.get()).values[0]?.value ?? 0;
const runs: { name: string; report: Report; cloudDecoded: number }[] = [];
async function run(name: string, make: () => Promise<PdDevice>, opts: Parameters<PdDevice["generate"]>[1]) {
  const before = await decodedBefore();
  const device = await make();
  if (!opts?.localOnly) await device.rtt(); // connect first: the clock starts at generate(), on an open connection
  const report = await device.generate(prompt, { maxTokens: MAX_TOKENS, targetTpotMs: TPOT, ...opts });
  await device.close();
  runs.push({ name, report, cloudDecoded: (await decodedBefore()) - before });
  process.stderr.write(`${name}: TTFT ${report.ttftMs.toFixed(0)} ms\n`);
}
await run("device only", () => PdDevice.create({ engine: deviceEngine }), { localOnly: true });
await run("cloud only", () => PdDevice.create({ engine: deviceEngine, cloud: cloudUrl, useKv: false }), {
  cloudOnly: true,
});
await run("P/D-Device", () => PdDevice.create({ engine: deviceEngine, cloud: cloudUrl, useKv: false }), {});
await run("P/D-Device + KV", () => PdDevice.create({ engine: deviceEngine, cloud: cloudUrl, useKv: true }), {});
await netem.close();
await cloud.close({ drainSeconds: 1 });
await deviceEngine.close();

const base = runs[0]!.report;
const cloudOnly = runs[1]!;
/** "N× lower" or "N× higher" of `ms` against `baseMs`. */
const vs = (ms: number, baseMs: number) =>
  ms <= baseMs ? `${(baseMs / ms).toFixed(2)}× lower` : `${(ms / baseMs).toFixed(2)}× higher`;
const rows = runs.map(({ name, report: r, cloudDecoded }) => [
  name,
  r.ttftMs.toFixed(0),
  name === "device only" ? "baseline" : vs(r.ttftMs, base.ttftMs),
  name === "cloud only" ? "baseline" : vs(r.ttftMs, cloudOnly.report.ttftMs),
  r.tpotMs.p50.toFixed(0),
  r.tpotMs.max.toFixed(0),
  String(r.stalls),
  name === "device only" || name === "cloud only"
    ? String(cloudDecoded)
    : `${cloudDecoded} (${(cloudOnly.cloudDecoded / Math.max(1, cloudDecoded)).toFixed(1)}× fewer)`,
  r.takeoverIndex === null ? "—" : String(r.takeoverIndex),
  r.prefillMs.device === null ? "—" : r.prefillMs.device.toFixed(0),
  r.prefillMs.cloud === null ? "—" : r.prefillMs.cloud.toFixed(0),
]);
const header = [
  "run",
  "TTFT ms",
  "TTFT vs device-only",
  "TTFT vs cloud-only",
  "TPOT p50 ms",
  "TPOT max ms",
  "stalls",
  "cloud decoded tokens (vs cloud-only)",
  "takeover k",
  "device prefill ms",
  "cloud prefill ms",
];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(" | ")} |`;
console.log(
  `\nmodel: bench preset (86M parameters, F16); prompt ${promptTokens} tokens; answer ${MAX_TOKENS} tokens; target TPOT ${TPOT} ms`,
);
console.log(
  `machine: ${availableParallelism()} cores; cloud engine 2 threads, device engine 1 thread, sharing the cores; ` +
    `network: emulated, RTT ${RTT} ms, ${BANDWIDTH} Mbit/s each way; TTFT warm (connection open), no device emulation\n`,
);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
const identical = runs.every((r) => r.report.text === base.text);
console.log(`\nsame answer text in every run: ${identical ? "yes" : "NO"}`);
process.exit(0);
