/**
 * `npm run bench:serve-scaling`: what sets the latency of 4 unstreamed
 * requests at once against one alone (issue 17: 1.87× where 1.5× was the
 * target). The same 25-token answers, measured layer by layer in one run:
 *
 * 1. the engine alone: 4 sequences decoding at once in one llama.cpp context
 *    (node-llama-cpp batches their evaluations into one decode per step) vs 1;
 * 2. the device alone (no cloud) through the OpenAI API;
 * 3. P/D through the OpenAI API, the cloud in this process (what
 *    `npm run bench:serve` measures);
 * 4. the same with the cloud in another process, so the two peers do not share
 *    one event loop (they still share the machine's cores).
 *
 * Each row is the median of REPEATS runs, for each generated model of
 * BENCH_PRESETS side by side (default tiny and bench: on tiny per-token
 * arithmetic dominates a decode step, on bench (86M parameters) reading the
 * weights does, which batching 4 sequences shares). The machine: whatever
 * `nproc` says (2 cores when this was written), shared by every peer in the
 * row. BENCH_ENGINE_ONLY=1 runs the engine row only; BENCH_DEVICE_THREADS
 * sets the device's threads.
 */
import { fork, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { Engine, ensureDefaultModel, parameterCount, PRESETS, type PresetName } from "../engine/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice, serveOpenAi } from "../reference-device/index.js";

const TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 25);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 7);
const DEVICE_THREADS = Number(process.env.BENCH_DEVICE_THREADS ?? 1);
const PROMPTS = ["The fox.", "A cat.", "One dog.", "Two birds."];
/** The generated models to measure side by side (BENCH_PRESETS=tiny,small,bench). */
const PRESETS_RUN = (process.env.BENCH_PRESETS ?? "tiny,bench").split(",") as PresetName[];
for (const p of PRESETS_RUN) if (!(p in PRESETS)) throw new Error(`BENCH_PRESETS: no preset ${p}`);
/** Only the engine row. */
const ENGINE_ONLY = process.env.BENCH_ENGINE_ONLY === "1";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(run: (prompts: string[]) => Promise<unknown>) {
  await run(PROMPTS.slice(0, 1)); // warm
  const alone: number[] = [];
  const four: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    let t = performance.now();
    await run(PROMPTS.slice(0, 1));
    alone.push(performance.now() - t);
    t = performance.now();
    await run(PROMPTS);
    four.push(performance.now() - t);
  }
  const a = median(alone);
  const f = median(four);
  return { aloneMs: a.toFixed(1), fourMs: f.toFixed(1), ratio: (f / a).toFixed(2) };
}

async function engineOnly(engine: Engine) {
  return measure((prompts) =>
    Promise.all(
      prompts.map(async (p) => {
        const slot = await engine.acquire();
        try {
          await slot.prefill(engine.tokenize(p));
          for await (const _ of slot.generate({}, TOKENS));
        } finally {
          await slot.release();
        }
      }),
    ),
  );
}

async function throughApi(device: PdDevice) {
  const api = await serveOpenAi(device, { streamTpotMs: 0 });
  const post = async (prompt: string) => {
    const res = await fetch(`${api.url}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt, max_tokens: TOKENS }),
    });
    const body = (await res.json()) as { pdd?: { mode: string; cloudTokens: number } };
    return body.pdd;
  };
  try {
    const modes = await post("The fox.");
    return {
      ...(await measure((prompts) => Promise.all(prompts.map(post)))),
      mode: modes?.mode,
      cloudTokens: modes?.cloudTokens,
    };
  } finally {
    await api.close();
  }
}

/** A reference cloud in a child process; resolves with its WebSocket URL. */
function cloudProcess(model: string): Promise<{ url: string; child: ChildProcess }> {
  const child = fork(new URL("./serve-scaling-cloud.ts", import.meta.url), [model], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    child.once("message", (url) => resolve({ url: String(url), child }));
    child.once("exit", (code) => reject(new Error(`cloud process exited ${code}`)));
  });
}

/** The rows of one model: its layers, each `{ aloneMs, fourMs, ratio, … }`. */
async function layersOf(model: string): Promise<Map<string, Record<string, unknown>>> {
  const rows = new Map<string, Record<string, unknown>>();
  const engine = await Engine.load({ modelPath: model, threads: DEVICE_THREADS, sequences: 4 });
  try {
    rows.set("engine alone, 4 sequences in one context", await engineOnly(engine));
    if (ENGINE_ONLY) return rows;
    rows.set("device alone via the API", await throughApi(await PdDevice.create({ engine })));
    const cloud = await startCloud({ model, threads: 2, logLevel: "warn", listen: { ws: "127.0.0.1:0" } });
    const pd = await PdDevice.create({ engine, cloud: cloud.urls.ws });
    rows.set("P/D via the API, cloud in this process", await throughApi(pd));
    await pd.close();
    await cloud.close({ drainSeconds: 0 });
    const remote = await cloudProcess(model);
    const pd2 = await PdDevice.create({ engine, cloud: remote.url });
    rows.set("P/D via the API, cloud in its own process", await throughApi(pd2));
    await pd2.close();
    const exited = new Promise((r) => remote.child.once("exit", r));
    remote.child.kill("SIGTERM");
    await exited;
    return rows;
  } finally {
    await engine.close();
  }
}

// One table, the presets side by side: "ratio" is 4 at once ÷ one alone (the target: ≤ 1.5).
const byPreset = new Map<string, Map<string, Record<string, unknown>>>();
for (const preset of PRESETS_RUN) byPreset.set(preset, await layersOf(ensureDefaultModel(preset)));
const table: Record<string, Record<string, unknown>> = {};
for (const [preset, rows] of byPreset)
  for (const [layer, r] of rows) {
    table[layer] ??= {};
    Object.assign(table[layer], {
      [`${preset} alone ms`]: r.aloneMs,
      [`${preset} 4 ms`]: r.fourMs,
      [`${preset} ratio`]: r.ratio,
      ...(r.mode !== undefined ? { [`${preset} mode`]: `${r.mode} (${r.cloudTokens} cloud)` } : {}),
    });
  }
console.log(
  `presets ${PRESETS_RUN.join(", ")} (${PRESETS_RUN.map((p) => `${p} ${(parameterCount(PRESETS[p]) / 1e6).toFixed(1)}M parameters`).join(", ")}); ` +
    `cores ${availableParallelism()}, device threads ${DEVICE_THREADS}, cloud threads 2, ${TOKENS} tokens, median of ${REPEATS}`,
);
console.table(table);
