/**
 * `npm run bench:llama-server`: requests per second one cloud peer fronts,
 * side by side in one run, on the same GGUF and the same machine:
 *
 *   - the node-llama-cpp engine in the cloud process (N sequences, 1 thread);
 *   - llama-server ×1 (N slots, 1 thread);
 *   - llama-server ×2 (N/2 slots each, 1 thread each: two threads in all);
 *
 * each cloud-only (every answer token from the cloud) and P/D (a small cloud
 * budget, then the device decodes on). The devices run in this process on
 * node-llama-cpp (1 thread), so they share the 2 cores with the backends: the
 * numbers compare engines under one load, not a GPU cloud.
 *
 * BENCH_PRESET (default small), BENCH_REQUESTS (24), BENCH_CONCURRENCY (4),
 * BENCH_PROMPT_TOKENS (200), BENCH_MAX_TOKENS (32), BENCH_PD_BUDGET (8),
 * BENCH_MODES ("cloud-only,pd"; "cloud-only" alone for a model too big for
 * the in-process devices to decode in reasonable time).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createModel,
  Engine,
  ensureLlamaServer,
  PRESETS,
  startLlamaServer,
  type LlamaServerProcess,
  type PresetName,
} from "../engine/index.js";
import { startCloud, type CloudConfigInput, type CloudPeer } from "../reference-cloud/index.js";
import { PdDevice } from "../reference-device/index.js";

const PRESET = (process.env.BENCH_PRESET ?? "small") as PresetName;
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 24);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const PROMPT_TOKENS = Number(process.env.BENCH_PROMPT_TOKENS ?? 200);
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 32);
const PD_BUDGET = Number(process.env.BENCH_PD_BUDGET ?? 8);
const MODES = (process.env.BENCH_MODES ?? "cloud-only,pd").split(",");
if (MODES.some((m) => m !== "cloud-only" && m !== "pd"))
  throw new Error(`BENCH_MODES: "cloud-only", "pd" or both, comma-separated; not ${MODES.join(",")}`);

const { binary } = await ensureLlamaServer({ log: (l) => process.stderr.write(`llama-server: ${l}\n`) });
const dir = mkdtempSync(join(tmpdir(), "pdd-bench-llama-server-"));
const modelPath = join(dir, `${PRESET}.gguf`);
createModel(modelPath, PRESETS[PRESET]);
const device = await Engine.load({ modelPath, threads: 1, sequences: CONCURRENCY, contextSize: 2048 });
const words = "the cloud prefills the prompt fast while the device decodes the answer on its own".split(" ");
const parts: string[] = [];
while (device.tokenize(`${parts.join(" ")}.`).length < PROMPT_TOKENS) parts.push(words[parts.length % words.length]!);
const prompt = `${parts.join(" ")}.`;

interface Row {
  engine: string;
  mode: string;
  rps: number;
  ttftMs: number;
  cloudTokens: number;
}

async function load(cloud: CloudPeer, cloudOnly: boolean): Promise<Omit<Row, "engine" | "mode">> {
  let next = 0;
  let ttft = 0;
  let cloudTokens = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < REQUESTS) {
      next++;
      const d = await PdDevice.create({ engine: device, cloud: cloud.urls.ws, useKv: false });
      const r = await d.generate(prompt, {
        maxTokens: MAX_TOKENS,
        targetTpotMs: 0,
        ...(cloudOnly ? { cloudOnly: true } : { cloudBudget: PD_BUDGET }),
      });
      await d.close();
      if (r.mode === "local") throw new Error(`a request fell back to the device: ${r.fallbackReason}`);
      ttft += r.ttftMs;
      cloudTokens += r.cloudTokens;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const s = (performance.now() - started) / 1000;
  return { rps: REQUESTS / s, ttftMs: ttft / REQUESTS, cloudTokens: cloudTokens / REQUESTS };
}

async function measure(engine: string, config: CloudConfigInput, rows: Row[]): Promise<void> {
  const cloud = await startCloud({ logLevel: "warn", listen: { ws: "127.0.0.1:0" }, ...config });
  try {
    for (const cloudOnly of MODES.map((m) => m === "cloud-only")) {
      const r = await load(cloud, cloudOnly);
      const row = { engine, mode: cloudOnly ? "cloud only" : "P/D", ...r };
      rows.push(row);
      process.stderr.write(`${engine}, ${row.mode}: ${r.rps.toFixed(2)} req/s\n`);
    }
  } finally {
    await cloud.close({ drainSeconds: 1 });
  }
}

const rows: Row[] = [];
const servers: LlamaServerProcess[] = [];
const pace = { decodePace: 0 }; // a batching server: send as fast as decoded (config.ts)
try {
  await measure(
    `node-llama-cpp (${CONCURRENCY} seq, 1 thread)`,
    { model: modelPath, sequences: CONCURRENCY, threads: 1, contextSize: 2048, ...pace },
    rows,
  );
  servers.push(
    await startLlamaServer({ binary, model: modelPath, slots: CONCURRENCY, contextSize: 2048 * CONCURRENCY }),
  );
  await measure(
    `llama-server ×1 (${CONCURRENCY} slots, 1 thread)`,
    { engine: "llama-server", backends: [servers[0]!.url], ...pace },
    rows,
  );
  await servers[0]!.stop();
  servers.length = 0;
  for (let i = 0; i < 2; i++)
    servers.push(
      await startLlamaServer({ binary, model: modelPath, slots: CONCURRENCY / 2, contextSize: 1024 * CONCURRENCY }),
    );
  await measure(
    `llama-server ×2 (${CONCURRENCY / 2} slots each, 1 thread each)`,
    { engine: "llama-server", backends: servers.map((s) => s.url), ...pace },
    rows,
  );
} finally {
  await Promise.all(servers.map((s) => s.stop()));
  await device.close();
  rmSync(dir, { recursive: true, force: true });
}

console.log(
  `\nmodel ${PRESET}, ${REQUESTS} requests, ${CONCURRENCY} at a time, prompt ${PROMPT_TOKENS} tokens, ${MAX_TOKENS} answer tokens, P/D budget ${PD_BUDGET}\n`,
);
console.log("| cloud engine | mode | req/s | mean TTFT ms | cloud tokens/request |");
console.log("|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.engine} | ${r.mode} | ${r.rps.toFixed(2)} | ${r.ttftMs.toFixed(0)} | ${r.cloudTokens.toFixed(1)} |`,
  );
