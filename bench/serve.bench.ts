/**
 * `npm run bench:serve`: `pdd device serve` with 1 request alone and then 4 at
 * once, streamed (paced at --tpot-ms, what a person watches) and not streamed
 * (unpaced), through the OpenAI API; and how soon an aborted stream frees the
 * device's sequence and the cloud's.
 *
 * Setup, stated because it shapes the numbers: one 2-core machine shared by
 * the cloud (2 threads) and the device (1 thread); the embedded tiny model on
 * both; loopback WebSocket. Unpaced answers are compute-bound, so 4 of them
 * share the same two cores; paced ones are bound by the pace.
 */
import { request } from "node:http";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice, serveOpenAi, type RequestLog } from "../reference-device/index.js";

const TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 25);
const TPOT = Number(process.env.BENCH_TPOT_MS ?? 40);
const model = ensureDefaultModel("tiny");
const engine = await Engine.load({ modelPath: model, threads: 1, sequences: 4 });
const cloud = await startCloud({ model, threads: 2, logLevel: "warn", listen: { ws: "127.0.0.1:0" } });
const device = await PdDevice.create({ engine, cloud: cloud.urls.ws });
const api = await serveOpenAi(device, { streamTpotMs: TPOT });

async function one(stream: boolean, prompt: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${api.url}/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: TOKENS, stream }),
  });
  await res.text();
  return performance.now() - t0;
}

const rows: Record<string, string | number>[] = [];
for (const stream of [false, true]) {
  await one(stream, "Warm up.");
  const alone = await one(stream, "The fox.");
  const four = await Promise.all(["The fox.", "A cat.", "One dog.", "Two birds."].map((p) => one(stream, p)));
  const slowest = Math.max(...four);
  rows.push({
    mode: stream ? `streamed, ${TPOT} ms/token` : "not streamed (unpaced)",
    aloneMs: Math.round(alone),
    fourMs: four.map(Math.round).join(" / "),
    slowestOverAlone: (slowest / alone).toFixed(2),
  });
}
console.table(rows);

// An aborted stream while the cloud still holds the request (the device emulates a slow prefill of a
// 300-token prompt): from the client's disconnect to the device's sequence free, and to the cloud's Cancel.
const slow = await PdDevice.create({
  engine,
  cloud: cloud.urls.ws,
  useKv: false,
  cloudBudget: 256,
  prefillChunk: 8,
  emulate: { prefillMsPerToken: 20 },
});
const slowApi = await serveOpenAi(slow, { streamTpotMs: TPOT });
const cancels = async () =>
  (await cloud.metrics.sequencesFreed.get()).values
    .filter((v) => v.labels.reason === "cancel")
    .reduce((a, v) => a + v.value, 0);
const cancelsBefore = await cancels();
const logged = new Promise<RequestLog>((r) => slowApi.events.once("request", r));
const u = new URL(`${slowApi.url}/completions`);
const req = request({
  host: u.hostname,
  port: u.port,
  path: u.pathname,
  method: "POST",
  headers: { "content-type": "application/json" },
});
const words = "the cloud prefills the prompt fast while the device decodes".split(" ");
const prompt = `${Array.from({ length: 300 }, (_, i) => words[i % words.length]).join(" ")}.`;
await new Promise<void>((resolve) => {
  req.on("response", (res) => res.once("data", () => resolve()));
  req.end(JSON.stringify({ prompt, max_tokens: 2000, stream: true }));
});
const t0 = performance.now();
req.destroy();
const log = await logged;
const deviceFreedMs = performance.now() - t0;
let cloudFreedMs = Number.NaN;
// Polled every millisecond: the cloud's metrics have no event to wait on.
while (performance.now() - t0 < 5_000) {
  if ((await cancels()) > cancelsBefore) {
    cloudFreedMs = performance.now() - t0;
    break;
  }
  await new Promise((r) => setTimeout(r, 1));
}
console.table([
  {
    outcome: log.outcome,
    deviceSequenceFreedMs: deviceFreedMs.toFixed(1),
    cloudSequenceFreedMs: cloudFreedMs.toFixed(1),
    deviceBusyAfter: engine.busy,
  },
]);
await slowApi.close();
await slow.close();
await api.close();
await device.close();
await cloud.close({ drainSeconds: 0 });
await engine.close();
