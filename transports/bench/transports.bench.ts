/**
 * `npm run bench:transports`: side by side in one run, each binding beside
 * its floor, like with like (cleartext ws against a raw ws echo, TLS wss
 * against a raw wss echo, gRPC and WebTransport against a raw HTTP/2 stream
 * with the same security): round-trip latency of a one-token frame,
 * bulk KV throughput, and token latency while a bulk KV transfer runs on the
 * same connection. Servers run in a worker thread, the client here.
 */
import { Worker } from "node:worker_threads";
import { create } from "@bufbuild/protobuf";
import { connect as http2Connect } from "node:http2";
import WebSocket from "ws";
import { DeviceFrameSchema } from "../../proto/index.js";
import { connect, createSelfSignedCertificate, type DeviceStream } from "../index.js";

const MiB = 1 << 20;
const ROUND_TRIPS = Number(process.env.BENCH_ROUND_TRIPS ?? 2000);
const BULK_MIB = Number(process.env.BENCH_BULK_MIB ?? 64);
const LOAD_MIB = Number(process.env.BENCH_LOAD_MIB ?? 128);

interface Row {
  name: string;
  p50: number;
  p99: number;
  mbps: number;
  loadP50: number;
  loadP99: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** A client that can: round-trip a small frame, and ask for N MiB of bulk. */
interface Probe {
  roundTrip(): Promise<number>;
  bulk(mib: number): Promise<void>;
  close(): Promise<void>;
}

async function pddProbe(url: string, cert: { cert: string }): Promise<Probe> {
  const s: DeviceStream = await connect(url, { ca: cert.cert, highWaterMark: 4 * MiB });
  const ping = create(DeviceFrameSchema, { body: { case: "ping", value: { nonce: 1n } } });
  let tokenWaiter: (() => void) | undefined;
  let bulkBytes = 0;
  let bulkWaiter: { need: number; resolve: () => void } | undefined;
  void (async () => {
    for await (const f of s) {
      if (f.body.case === "tokenBatch") tokenWaiter?.();
      if (f.body.case === "kvChunk") {
        bulkBytes += f.body.value.data.length;
        if (bulkWaiter && bulkBytes >= bulkWaiter.need) bulkWaiter.resolve();
      }
    }
  })().catch(() => undefined);
  return {
    async roundTrip() {
      const t0 = now();
      await new Promise<void>((resolve, reject) => {
        tokenWaiter = resolve;
        s.send(ping).catch(reject);
      });
      return now() - t0;
    },
    bulk(mib) {
      bulkBytes = 0;
      return new Promise<void>((resolve, reject) => {
        bulkWaiter = { need: mib * MiB, resolve };
        s.send(create(DeviceFrameSchema, { body: { case: "progress", value: { prefilledTokens: mib } } })).catch(
          reject,
        );
      });
    },
    close: () => s.close(),
  };
}

async function rawProbe(url: string, ca: string): Promise<Probe> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * MiB, ca });
  await new Promise((r, j) => ws.once("open", r).once("error", j));
  let tokenWaiter: (() => void) | undefined;
  let bulkBytes = 0;
  let bulkWaiter: { need: number; resolve: () => void } | undefined;
  // A one-token frame is ~16 bytes on the wire; echo that many.
  const small = Buffer.alloc(16, 1);
  ws.on("message", (d: Buffer) => {
    if (d.length === small.length) tokenWaiter?.();
    else {
      bulkBytes += d.length;
      if (bulkWaiter && bulkBytes >= bulkWaiter.need) bulkWaiter.resolve();
    }
  });
  return {
    async roundTrip() {
      const t0 = now();
      await new Promise<void>((resolve) => {
        tokenWaiter = resolve;
        ws.send(small);
      });
      return now() - t0;
    },
    bulk(mib) {
      bulkBytes = 0;
      return new Promise<void>((resolve) => {
        bulkWaiter = { need: mib * MiB, resolve };
        ws.send(Buffer.from([2, mib]));
      });
    },
    async close() {
      ws.close();
    },
  };
}

/** A raw HTTP/2 connection: one echo stream for the round trips, a new stream per bulk transfer. */
async function h2Probe(url: string, ca: string): Promise<Probe> {
  const session = http2Connect(url, { ca });
  await new Promise((r, j) => session.once("connect", r).once("error", j));
  const echo = session.request({ ":method": "POST", ":path": "/echo" });
  const small = Buffer.alloc(16, 1);
  let got = 0;
  let tokenWaiter: (() => void) | undefined;
  echo.on("data", (d: Buffer) => {
    got += d.length;
    if (got >= small.length) {
      got -= small.length;
      tokenWaiter?.();
    }
  });
  return {
    async roundTrip() {
      const t0 = now();
      await new Promise<void>((resolve) => {
        tokenWaiter = resolve;
        echo.write(small);
      });
      return now() - t0;
    },
    bulk(mib) {
      const s = session.request({ ":method": "GET", ":path": `/bulk/${mib}` });
      s.resume();
      return new Promise<void>((resolve) => s.once("end", () => resolve()));
    },
    async close() {
      echo.close();
      session.close();
    },
  };
}

/** Round trips for every probe, interleaved in rounds so all see the same machine state. */
async function roundTrips(probes: Probe[]): Promise<number[][]> {
  const samples = probes.map(() => [] as number[]);
  for (const p of probes) for (let i = 0; i < 300; i++) await p.roundTrip(); // warm-up
  const ROUNDS = 10;
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, p] of probes.entries()) {
      for (let i = 0; i < ROUND_TRIPS / ROUNDS; i++) samples[k]!.push(await p.roundTrip());
    }
  }
  return samples;
}

async function bulkAndLoad(probe: Probe): Promise<Pick<Row, "mbps" | "loadP50" | "loadP99">> {
  const t0 = now();
  await probe.bulk(BULK_MIB);
  const mbps = (BULK_MIB * MiB) / 1e6 / ((now() - t0) / 1000);
  // Token round trips while a bulk transfer runs on the same connection.
  const loaded: number[] = [];
  let done = false;
  const transfer = probe.bulk(LOAD_MIB).then(() => (done = true));
  while (!done) {
    loaded.push(await probe.roundTrip());
    await new Promise((r) => setTimeout(r, 2));
  }
  await transfer;
  return { mbps, loadP50: pct(loaded, 50), loadP99: pct(loaded, 99) };
}

const cert = await createSelfSignedCertificate();
const worker = new Worker(new URL("./tsx-worker.mjs", import.meta.url), {
  workerData: { cert, entry: new URL("./bench-server.ts", import.meta.url).href },
});
const urls = await new Promise<Record<string, string>>((resolve, reject) => {
  worker.once("message", resolve);
  worker.once("error", reject);
});

/** Each pdd binding beside its floor: the same framing layer with nothing of ours on it, cleartext or TLS as it is. */
const contenders: { name: string; floor: string; open: () => Promise<Probe> }[] = [
  { name: "raw ws echo (floor)", floor: "raw ws echo (floor)", open: () => rawProbe(urls.rawWs!, cert.cert) },
  { name: "pdd websocket (ws)", floor: "raw ws echo (floor)", open: () => pddProbe(urls.ws!, cert) },
  {
    name: "raw HTTP/2 stream, h2c (floor)",
    floor: "raw HTTP/2 stream, h2c (floor)",
    open: () => h2Probe(urls.rawH2c!, cert.cert),
  },
  { name: "pdd grpc (h2c)", floor: "raw HTTP/2 stream, h2c (floor)", open: () => pddProbe(urls.grpc!, cert) },
  {
    name: "raw wss echo, TLS (floor)",
    floor: "raw wss echo, TLS (floor)",
    open: () => rawProbe(urls.rawWss!, cert.cert),
  },
  { name: "pdd websocket (wss)", floor: "raw wss echo, TLS (floor)", open: () => pddProbe(urls.wss!, cert) },
  {
    name: "raw HTTP/2 stream, TLS (floor)",
    floor: "raw HTTP/2 stream, TLS (floor)",
    open: () => h2Probe(urls.rawH2s!, cert.cert),
  },
  { name: "pdd grpc (grpcs, TLS)", floor: "raw HTTP/2 stream, TLS (floor)", open: () => pddProbe(urls.grpcs!, cert) },
  { name: "pdd webtransport (h2, TLS)", floor: "raw HTTP/2 stream, TLS (floor)", open: () => pddProbe(urls.wt!, cert) },
];
const probes: Probe[] = [];
for (const c of contenders) probes.push(await c.open());
const rtts = await roundTrips(probes);
const rows: Row[] = [];
for (const [k, p] of probes.entries()) {
  rows.push({ name: contenders[k]!.name, p50: pct(rtts[k]!, 50), p99: pct(rtts[k]!, 99), ...(await bulkAndLoad(p)) });
  await p.close();
}

const floorOf = (r: Row) => rows.find((x) => x.name === contenders.find((c) => c.name === r.name)!.floor)!;
const f = (x: number) => (x < 10 ? x.toFixed(3) : x.toFixed(1));
const table = [
  ["transport", "RTT p50 ms", "×floor", "RTT p99 ms", "×floor", "KV MB/s", "×floor", "RTT p50 under KV ms"],
  ...rows.map((r) => {
    const b = floorOf(r);
    return [
      r.name,
      f(r.p50),
      `${(r.p50 / b.p50).toFixed(2)}×`,
      f(r.p99),
      `${(r.p99 / b.p99).toFixed(2)}×`,
      r.mbps.toFixed(0),
      `${(r.mbps / b.mbps).toFixed(2)}×`,
      f(r.loadP50),
    ];
  }),
];
table[0]!.push("RTT p99 under KV ms", "×floor");
for (const [i, r] of rows.entries())
  table[i + 1]!.push(f(r.loadP99), `${(r.loadP99 / floorOf(r).loadP99).toFixed(2)}×`);
const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
console.log(
  `one-token frame round trips: ${ROUND_TRIPS} per transport, interleaved in 10 rounds after ` +
    `300 warm-up; bulk: ${BULK_MIB} MiB in 1 MiB chunks; under load: ${LOAD_MIB} MiB transfer; ` +
    `node ${process.version}; loopback, no emulated network. Each pdd binding is compared with its floor: ` +
    `cleartext with cleartext, TLS with TLS\n`,
);
console.log(line(table[0]!));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of table.slice(1)) console.log(line(r));
const ws = rows.find((r) => r.name === "pdd websocket (wss)")!;
const wt = rows.find((r) => r.name.startsWith("pdd webtransport"))!;
console.log("");
for (const r of rows.filter((x) => x.name.startsWith("pdd")))
  console.log(
    `target p50 within 1.5× of its floor: ${r.name} ${(r.p50 / floorOf(r).p50).toFixed(2)}× ${r.p50 <= 1.5 * floorOf(r).p50 ? "MET" : "NOT MET"}`,
  );
console.log(
  `target WebTransport token p99 under KV load better than WebSocket over TLS: ${f(wt.loadP99)} vs ` +
    `${f(ws.loadP99)} ms ${wt.loadP99 < ws.loadP99 ? "MET" : "NOT MET"}`,
);
await worker.terminate();
process.exit(0);
