/**
 * `npm run bench:soak`: real reference devices (PdDevice: planner,
 * speed controller, catch-up, takeover) against one reference cloud, both on
 * the simulated engine, so thousands of peers fit on this machine.
 *
 * Phase 1: SOAK_CONCURRENT devices at once, on the published phone and
 *   cloud-GPU profiles in real time, each with its own connection, asking one
 *   P/D request at a 50 ms display pace.
 * Phase 2: SOAK_SEQUENTIAL devices one after another (connect, calibrate,
 *   answer, close), on zero-time engines so the run measures the peers.
 *
 * Every answer is checked against the greedy text the device computes alone:
 * "lost" is an answer missing, short or different. Reports p99 TTFT, max
 * TPOT and stalls, errors, RSS before, at the peak and after, memory per
 * session, and what is left open at the end (connections, sequences, handles).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CLOUD_GPU, INSTANT, PHONE, SimEngine, type Profile } from "../engine/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice } from "../reference-device/index.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const CONCURRENT = Number(process.env.SOAK_CONCURRENT ?? 1000);
const SEQUENTIAL = Number(process.env.SOAK_SEQUENTIAL ?? 20_000);
const TRANSPORT = (process.env.SOAK_TRANSPORT ?? "ws") as "ws" | "grpc" | "webtransport";
const TARGET_TPOT = 50;
const heap = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};
// _getActiveHandles is an undocumented Node internal that @types/node does not declare.
const handles = () => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;

interface Outcome {
  ttftMs?: number;
  maxGapMs: number;
  stalls: number;
  lost: boolean;
  error?: string;
  fallback: boolean;
}

const prompt = (n: number) =>
  `Device ${n} asks: ${"tell me how the cloud and the phone share the work of one answer. ".repeat(2 + (n % 5))}`;

/** The greedy answer of the simulated model for a prompt, computed alone. */
async function expected(p: string, tokens: number): Promise<string> {
  const e = new SimEngine({ profile: INSTANT });
  const slot = await e.acquire();
  await slot.prefill(e.tokenize(p));
  const out: number[] = [];
  for await (const t of slot.generate({}, tokens)) out.push(t);
  await slot.release();
  return Buffer.from(e.bytes(out)).toString("utf8");
}

async function phase(
  cloudProfile: Profile,
  deviceProfile: Profile,
  n: number,
  concurrent: boolean,
  answer: number,
  targetTpotMs: number,
): Promise<{ outs: Outcome[]; ms: number; peakRss: number; cloud: { connections: number; busy: number } }> {
  const engine = new SimEngine({ profile: cloudProfile, sequences: 64 });
  const cloud = await startCloud(
    {
      logLevel: "warn",
      listen: { [TRANSPORT]: "127.0.0.1:0" },
      queueLimit: 100_000,
      decodePace: 0,
      drainSeconds: 0,
      limits: { maxConcurrentRequests: 8 },
    },
    { engine },
  );
  const url = cloud.urls[TRANSPORT]!;
  let peakRss = 0;
  const one = async (i: number): Promise<Outcome> => {
    let device: PdDevice | undefined;
    const shown: number[] = [];
    try {
      device = await PdDevice.create({
        engine: new SimEngine({ profile: deviceProfile }),
        cloud: url,
        client: { ca: cloud.certificate.cert, connectTimeoutMs: 60_000 },
        targetTpotMs,
      });
      const t0 = performance.now();
      const rep = await device.generate(prompt(i), { maxTokens: answer, onText: () => shown.push(performance.now()) });
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      const gaps = shown.slice(1).map((x, j) => x - shown[j]!);
      return {
        ttftMs: shown[0] === undefined ? undefined : shown[0] - t0,
        maxGapMs: Math.max(0, ...gaps),
        stalls: targetTpotMs > 0 ? gaps.filter((g) => g > 2 * targetTpotMs).length : 0,
        lost: rep.text !== (await expected(prompt(i), answer)),
        fallback: rep.mode !== "pd",
        error: rep.fallbackReason,
      };
    } catch (e) {
      return { maxGapMs: 0, stalls: 0, lost: true, fallback: false, error: (e as Error).message };
    } finally {
      await device?.close();
    }
  };
  const t = performance.now();
  const outs: Outcome[] = [];
  if (concurrent) outs.push(...(await Promise.all(Array.from({ length: n }, (_, i) => one(i)))));
  else
    for (let i = 0; i < n; i++) {
      outs.push(await one(i));
      if (process.stderr.isTTY && i % 500 === 0) process.stderr.write(`\r${i}/${n}`);
    }
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  const ms = performance.now() - t;
  await new Promise((r) => setTimeout(r, 200));
  const left = { connections: cloud.connections, busy: engine.busy };
  await cloud.close({ drainSeconds: 0 });
  return { outs, ms, peakRss, cloud: left };
}

function row(name: string, r: Awaited<ReturnType<typeof phase>>): string {
  const ttft = r.outs.flatMap((o) => (o.ttftMs === undefined ? [] : [o.ttftMs])).sort((a, b) => a - b);
  const q = (p: number) => ttft[Math.min(ttft.length - 1, Math.floor(p * (ttft.length - 1)))]?.toFixed(1) ?? "—";
  const errors = r.outs.filter((o) => o.error);
  return (
    `| ${name} | ${r.outs.length} | ${(r.ms / 1000).toFixed(1)} | ${q(0.5)} | ${q(0.99)} | ${Math.max(...r.outs.map((o) => o.maxGapMs)).toFixed(1)} ` +
    `| ${r.outs.reduce((n, o) => n + o.stalls, 0)} | ${errors.length}${errors[0] ? ` (${errors[0].error})` : ""} ` +
    `| ${r.outs.filter((o) => o.fallback).length} | ${r.outs.filter((o) => o.lost).length} | ${r.cloud.connections} ` +
    `/ ${r.cloud.busy} |`
  );
}

await new Promise((r) => setTimeout(r, 200));
gc();
const rssBefore = process.memoryUsage().rss;
const heapBefore = heap();
const handlesBefore = handles();
/**
 * RSS once V8 has handed freed pages back: its memory reducer does so after
 * a few idle seconds (measured: 285 → 150 MiB over 8 s after 1,000 devices).
 * Waits until RSS stops falling (at most 30 s); returns it and the wait.
 */
async function settledRss(): Promise<{ rss: number; waitedS: number }> {
  let last = Number.POSITIVE_INFINITY;
  for (let s = 1; s <= 30; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    gc();
    const rss = process.memoryUsage().rss;
    if (s >= 3 && rss >= last - (1 << 20)) return { rss, waitedS: s };
    last = Math.min(last, rss);
  }
  return { rss: process.memoryUsage().rss, waitedS: 30 };
}

const concurrent = await phase(CLOUD_GPU, PHONE, CONCURRENT, true, 64, TARGET_TPOT);
const mid = await settledRss();
const rssMid = mid.rss;
const heapMid = heap();
const sequential = await phase(INSTANT, INSTANT, SEQUENTIAL, false, 32, 0);
const after = await settledRss();
const rssAfter = after.rss;
const heapAfter = heap();

console.log(
  `Reference devices against the reference cloud over ${TRANSPORT}, simulated engines (concurrent: ` +
    `${PHONE.name} / ${CLOUD_GPU.name} in real time, 64-token answers at ${TARGET_TPOT} ms; sequential: ` +
    `zero-time engines, 32-token answers shown as they come).\n`,
);
console.log(
  "| phase | devices | seconds | TTFT p50 ms | TTFT p99 ms | TPOT max ms | stalls | errors | not P/D | lost answers | left open (connections / sequences) |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
console.log(row(`${CONCURRENT} concurrent`, concurrent));
console.log(row(`${SEQUENTIAL} sequential`, sequential));
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
console.log(
  `\nRSS before ${mib(rssBefore)} MiB; at the concurrent peak ${mib(concurrent.peakRss)} MiB ` +
    `(${((concurrent.peakRss - rssBefore) / 1024 / CONCURRENT).toFixed(1)} KiB per concurrent device, ` +
    `cloud and device sides together); after phase 1 ${mib(rssMid)} MiB (${mid.waitedS} s idle); ` +
    `after phase 2 ${mib(rssAfter)} MiB (${after.waitedS} s idle; ${(100 * (rssAfter / rssBefore - 1)).toFixed(1)}% ` +
    `vs before).`,
);
console.log(
  `JS heap + external memory (what the program holds, without the allocator's retained pages): ` +
    `${mib(heapBefore)} MiB before, ${mib(heapMid)} MiB after phase 1, ${mib(heapAfter)} MiB after ` +
    `phase 2 (${(100 * (heapAfter / heapBefore - 1)).toFixed(1)}% vs before).`,
);
console.log(`Open handles: ${handles()} at the end (${handlesBefore} before).`);
