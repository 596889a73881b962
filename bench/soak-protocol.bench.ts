/**
 * `npm run bench:soak:protocol`: many device sessions against one reference cloud
 * (the embedded model, so the protocol and the server are what is measured).
 * Phase 1: SOAK_CONCURRENT sessions at once; phase 2: SOAK_SEQUENTIAL
 * sessions one after another. Each session connects over WebSocket, says
 * Hello, asks one request and reads it to its End; a retryable refusal
 * (the queue is full) is retried with backoff, so an answer is only lost
 * when a session ends without one.
 *
 * Reports p99 TTFT, errors, lost answers, RSS before and after, memory per
 * session, busy sequences and open handles at the end.
 */
import { create } from "@bufbuild/protobuf";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { ensureDefaultModel } from "../engine/index.js";
import { Codec, DeviceFrameSchema, isRetryable, type CloudFrame } from "../proto/index.js";
import { connect } from "../transports/index.js";
import { startCloud } from "../reference-cloud/index.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const CONCURRENT = Number(process.env.SOAK_CONCURRENT ?? 1000);
const SEQUENTIAL = Number(process.env.SOAK_SEQUENTIAL ?? 20_000);

const cloud = await startCloud({
  model: ensureDefaultModel("tiny"),
  threads: 1,
  sequences: 4,
  queueLimit: 100_000,
  logLevel: "warn",
  limits: { maxConcurrentRequests: 8 },
  listen: { ws: "127.0.0.1:0" },
});
const url = cloud.urls.ws!;
// _getActiveHandles is an undocumented Node internal that @types/node does not declare.
const handles = () => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;

interface Outcome {
  ttftMs?: number;
  tokens: number;
  error?: string;
  retries: number;
}

async function session(n: number): Promise<Outcome> {
  let retries = 0;
  for (;;) {
    const t0 = performance.now();
    const s = await connect(url, { connectTimeoutMs: 30_000 });
    try {
      await s.send(
        create(DeviceFrameSchema, {
          body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } },
        }),
      );
      await s.send(
        create(DeviceFrameSchema, {
          body: {
            case: "prefillRequest",
            value: {
              requestId: 1,
              prompt: { case: "text", value: `Session ${n}: tell me about the fox.` },
              cloudTokenBudget: 8,
            },
          },
        }),
      );
      let ttft: number | undefined;
      let tokens = 0;
      let refused: CloudFrame | undefined;
      for await (const f of s) {
        if (f.body.case === "firstToken") {
          ttft = performance.now() - t0;
          tokens++;
        } else if (f.body.case === "tokenBatch") tokens += f.body.value.tokens.length;
        else if (f.body.case === "error") refused = f;
        else if (f.body.case === "end") break;
      }
      if (refused?.body.case === "error" && isRetryable(refused.body.value.code) && retries < 50) {
        retries++;
        await new Promise((r) => setTimeout(r, Math.min(2000, 20 * 2 ** Math.min(retries, 6)) * (0.5 + Math.random())));
        continue;
      }
      return {
        ttftMs: ttft,
        tokens,
        retries,
        error:
          refused?.body.case === "error"
            ? refused.body.value.message
            : ttft === undefined
              ? "no first token"
              : undefined,
      };
    } catch (e) {
      return { tokens: 0, retries, error: (e as Error).message };
    } finally {
      await s.close();
    }
  }
}

function summary(name: string, outs: Outcome[], ms: number): string {
  const ttft = outs.flatMap((o) => (o.ttftMs === undefined ? [] : [o.ttftMs])).sort((a, b) => a - b);
  const q = (p: number) => ttft[Math.min(ttft.length - 1, Math.floor(p * (ttft.length - 1)))]?.toFixed(1) ?? "—";
  const lost = outs.filter((o) => o.tokens === 0).length;
  const errors = outs.filter((o) => o.error).length;
  return (
    `| ${name} | ${outs.length} | ${(ms / 1000).toFixed(1)} | ${((1000 * outs.length) / ms).toFixed(0)} ` +
    `| ${q(0.5)} | ${q(0.99)} | ${errors} | ${lost} | ${outs.reduce((n, o) => n + o.retries, 0)} ` +
    `|`
  );
}

await new Promise((r) => setTimeout(r, 200));
gc();
const rssBefore = process.memoryUsage().rss;
const handlesBefore = handles();
const rows: string[] = [];

let t = performance.now();
const concurrent = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => session(i)));
rows.push(summary(`${CONCURRENT} concurrent`, concurrent, performance.now() - t));
const rssPeak = process.memoryUsage().rss;

t = performance.now();
const sequential: Outcome[] = [];
for (let i = 0; i < SEQUENTIAL; i++) {
  sequential.push(await session(CONCURRENT + i));
  if (process.stderr.isTTY && i % 500 === 0) process.stderr.write(`\r${i}/${SEQUENTIAL}`);
}
if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
rows.push(summary(`${SEQUENTIAL} sequential`, sequential, performance.now() - t));

// Vanishing devices: the time from an abrupt disconnect (mid-stream) to the sequence being free.
const freeMs: number[] = [];
for (let i = 0; i < 20; i++) {
  const s = await connect(url);
  await s.send(
    create(DeviceFrameSchema, {
      body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } },
    }),
  );
  await s.send(
    create(DeviceFrameSchema, {
      body: {
        case: "prefillRequest",
        value: {
          requestId: 1,
          prompt: { case: "text", value: "The fox." },
          cloudTokenBudget: 200,
          targetTpotUs: 200_000,
        },
      },
    }),
  );
  for await (const f of s) if (f.body.case === "firstToken") break;
  const t0 = performance.now();
  s.abort();
  while (cloud.engine.busy > 0) await new Promise((r) => setImmediate(r));
  freeMs.push(performance.now() - t0);
}
freeMs.sort((a, b) => a - b);

// A slow reader: one device asks for a long answer and a KV image, then stops reading.
// Measured: the TPOT of eight other devices meanwhile, against the same eight alone.
async function pacedGaps(): Promise<number[]> {
  const gaps: number[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const s = await connect(url);
      await s.send(
        create(DeviceFrameSchema, {
          body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } },
        }),
      );
      await s.send(
        create(DeviceFrameSchema, {
          body: {
            case: "prefillRequest",
            value: {
              requestId: 1,
              prompt: { case: "text", value: `Reader ${i}: the fox.` },
              cloudTokenBudget: 48,
              targetTpotUs: 20_000,
            },
          },
        }),
      );
      let last: number | undefined;
      for await (const f of s) {
        if (f.body.case === "firstToken" || f.body.case === "tokenBatch") {
          const now = performance.now();
          if (last !== undefined) gaps.push(now - last);
          last = now;
        } else if (f.body.case === "end") break;
      }
      await s.close();
    }),
  );
  return gaps.sort((a, b) => a - b);
}
const p99 = (xs: number[]) => xs[Math.floor(0.99 * (xs.length - 1))]!;
const alone = await pacedGaps();
gc();
const rssSlowBefore = process.memoryUsage().rss;
const slow = await connect(url, { highWaterMark: 64 * 1024 });
await slow.send(
  create(DeviceFrameSchema, {
    body: {
      case: "hello",
      value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO], deviceModel: { ...cloud.engine.info } },
    },
  }),
);
await slow.send(
  create(DeviceFrameSchema, {
    body: {
      case: "prefillRequest",
      value: {
        requestId: 1,
        prompt: { case: "text", value: "The quick brown fox jumps over the lazy dog. ".repeat(150) },
        cloudTokenBudget: 256,
        kv: { format: 1, maxChunkBytes: 65_536, initialCreditBytes: 1n << 30n },
      },
    },
  }),
);
// It never reads.
await new Promise((r) => setTimeout(r, 1000));
const withSlow = await pacedGaps();
const rssSlow = process.memoryUsage().rss;
slow.abort();
console.log(
  `\nSlow reader: other devices' TPOT p99 ${p99(withSlow).toFixed(1)} ms with it, ${p99(alone).toFixed(1)} ` +
    `ms without (target pace 10 ms sent, 20 ms shown); RSS ${((rssSlow - rssSlowBefore) / 2 ** 20).toFixed(1)} ` +
    `MiB higher while it held its answer and KV image.`,
);

await new Promise((r) => setTimeout(r, 500));
gc();
const rssAfter = process.memoryUsage().rss;
console.log(
  "| phase | sessions | seconds | sessions/s | TTFT p50 ms | TTFT p99 ms | errors | lost answers | retries |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
console.log(
  `\nRSS before ${(rssBefore / 2 ** 20).toFixed(0)} MiB, at the concurrent peak ${(rssPeak / 2 ** 20).toFixed(0)} ` +
    `MiB (${((rssPeak - rssBefore) / 1024 / CONCURRENT).toFixed(1)} KiB per concurrent session), ` +
    `after ${(rssAfter / 2 ** 20).toFixed(0)} MiB (${(100 * (rssAfter / rssBefore - 1)).toFixed(1)}% ` +
    `vs before).`,
);
console.log(
  `A vanished device's sequence was free after ${freeMs[0]!.toFixed(1)}–${freeMs[freeMs.length - 1]!.toFixed(1)} ` +
    `ms (median ${freeMs[10]!.toFixed(1)} ms, 20 trials).`,
);
console.log(
  `Cloud: ${cloud.connections} connections open, ${cloud.engine.busy} sequences busy at the end. Open handles: ${handles()} (${handlesBefore} before).`,
);
await cloud.close({ drainSeconds: 0 });
