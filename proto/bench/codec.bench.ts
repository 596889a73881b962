/**
 * `npm run bench:codec`: encode+decode cost of a token-batch frame and KV-chunk
 * throughput for the proto and msgpack codecs against a JSON.stringify/parse
 * baseline, measured side by side in one run.
 */
import { create } from "@bufbuild/protobuf";
import { CloudFrameSchema, type CloudFrame } from "../gen/pdd/v1/pdd_pb.js";
import { createCodec, type FrameCodec } from "../codec/index.js";

interface Contender {
  name: string;
  roundTrip(frame: CloudFrame): unknown;
}

function codecContender(codec: FrameCodec): Contender {
  return { name: codec.name, roundTrip: (f) => codec.decode(CloudFrameSchema, codec.encode(CloudFrameSchema, f)) };
}

// The baseline is the simplest thing that works: JSON.stringify/parse of the
// message object, bytes as base64 and 64-bit integers as strings through a
// replacer and reviver. No schema, no validation.
const BYTES_KEYS = new Set(["piece", "data", "imageSha256", "modelFingerprint", "tokenizerFingerprint"]);
const jsonBaseline: Contender = {
  name: "json (baseline)",
  roundTrip: (f) =>
    JSON.parse(
      JSON.stringify(f, (_k, v) =>
        v instanceof Uint8Array
          ? Buffer.from(v.buffer, v.byteOffset, v.length).toString("base64")
          : typeof v === "bigint"
            ? v.toString()
            : v,
      ),
      (k, v) => (BYTES_KEYS.has(k) && typeof v === "string" ? Buffer.from(v, "base64") : v),
    ),
};

function tokenFrame(n: number): CloudFrame {
  return create(CloudFrameSchema, {
    body: {
      case: "tokenBatch",
      value: {
        requestId: 7,
        startIndex: 12,
        tokens: Array.from({ length: n }, (_, i) => ({ id: 1000 + i, piece: new Uint8Array([0x20, 0x61 + (i % 26)]) })),
      },
    },
  });
}

function kvFrame(bytes: number): CloudFrame {
  return create(CloudFrameSchema, {
    body: {
      case: "kvChunk",
      value: {
        requestId: 7,
        format: 1,
        tokenCount: 2048,
        offset: 0n,
        totalBytes: 1n << 30n,
        data: new Uint8Array(bytes).fill(7),
        crc32: 0x12345678,
      },
    },
  });
}

/** Median of `rounds` timings, each of `iters` calls: nanoseconds per call. */
function nsPerOp(fn: () => void, iters: number, rounds = 7): number {
  for (let i = 0; i < iters; i++) fn(); // warm-up
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn();
    samples.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

const contenders = [
  jsonBaseline,
  codecContender(createCodec("proto")),
  codecContender(createCodec("msgpack", { maxFrameBytes: 64 << 20 })),
];
const rows: string[][] = [];
const one = tokenFrame(1);
const eight = tokenFrame(8);
const kv = kvFrame(1 << 20);
const results = contenders.map((c) => ({
  name: c.name,
  one: nsPerOp(() => c.roundTrip(one), 20_000),
  eight: nsPerOp(() => c.roundTrip(eight), 10_000),
  kvMBs: (1 << 20) / 1e6 / (nsPerOp(() => c.roundTrip(kv), 20, 5) / 1e9),
}));
const base = results[0]!;
for (const r of results) {
  rows.push([
    r.name,
    `${(r.one / 1000).toFixed(2)} µs`,
    `${(base.one / r.one).toFixed(2)}×`,
    `${(r.eight / 1000).toFixed(2)} µs`,
    `${(base.eight / r.eight).toFixed(2)}×`,
    `${r.kvMBs.toFixed(0)} MB/s`,
    `${(r.kvMBs / base.kvMBs).toFixed(2)}×`,
  ]);
}
const header = ["codec", "1-token frame", "speed-up", "8-token frame", "speed-up", "1 MiB KV chunk", "speed-up"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
console.log(`encode+decode round trip per frame, median of 7 rounds; node ${process.version}\n`);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
const proto = results.find((r) => r.name === "proto")!;
console.log(
  `\ntarget: proto 1-token round trip < 2 µs → ${(proto.one / 1000).toFixed(2)} µs ${proto.one < 2000 ? "MET" : "NOT MET"}`,
);
