/**
 * `npm run bench:codec`: encode+decode cost of a token-batch frame and KV-chunk
 * throughput, measured side by side in one run, against the baseline a user
 * would otherwise pick: the generic protobuf-es path (`toBinary`/`fromBinary`
 * on the same schema). JSON.stringify/parse is kept as a second reference.
 *
 * Each contender is measured twice: the codec alone, and with the 4-byte
 * length-prefix framing of the byte-stream bindings (spec §9.4) on both sides
 * (`lengthPrefixed` then `FrameDecoder.push`), which every frame on gRPC and
 * WebTransport pays.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CloudFrameSchema, type CloudFrame } from "../gen/pdd/v1/pdd_pb.js";
import { createCodec, type FrameCodec } from "../codec/index.js";
import { FrameDecoder, lengthPrefixed } from "../framing.js";

interface Contender {
  name: string;
  encode(frame: CloudFrame): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

function codecContender(codec: FrameCodec): Contender {
  return {
    name: `${codec.name} (pdd codec)`,
    encode: (f) => codec.encode(CloudFrameSchema, f),
    decode: (b) => codec.decode(CloudFrameSchema, b),
  };
}

/** The baseline: protobuf-es's generic reflection-based binary path, no hand-written hot path. */
const protobufEs: Contender = {
  name: "protobuf-es generic (baseline)",
  encode: (f) => toBinary(CloudFrameSchema, f),
  decode: (b) => fromBinary(CloudFrameSchema, b),
};

// The second reference is the simplest thing that works: JSON.stringify/parse
// of the message object, bytes as base64 and 64-bit integers as strings
// through a replacer and reviver. No schema, no validation.
const BYTES_KEYS = new Set(["piece", "data", "imageSha256", "modelFingerprint", "tokenizerFingerprint"]);
const jsonReference: Contender = {
  name: "JSON + base64 (reference)",
  encode: (f) =>
    Buffer.from(
      JSON.stringify(f, (_k, v) =>
        v instanceof Uint8Array
          ? Buffer.from(v.buffer, v.byteOffset, v.length).toString("base64")
          : typeof v === "bigint"
            ? v.toString()
            : v,
      ),
    ),
  decode: (b) =>
    JSON.parse(Buffer.from(b.buffer, b.byteOffset, b.length).toString(), (k, v) =>
      BYTES_KEYS.has(k) && typeof v === "string" ? Buffer.from(v, "base64") : v,
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

/** One round trip: encode, then decode; with `framed`, through the length prefix and a FrameDecoder too. */
function roundTrip(c: Contender, framed: boolean): (f: CloudFrame) => void {
  if (!framed) return (f) => c.decode(c.encode(f));
  const decoder = new FrameDecoder(64 << 20);
  return (f) => {
    for (const payload of decoder.push(lengthPrefixed(c.encode(f)))) c.decode(payload);
  };
}

interface Result {
  name: string;
  framed: boolean;
  one: number;
  eight: number;
  kvMBs: number;
}

function measure(c: Contender, framed: boolean): Result {
  const rt = roundTrip(c, framed);
  const one = tokenFrame(1);
  const eight = tokenFrame(8);
  const kv = kvFrame(1 << 20);
  return {
    name: c.name,
    framed,
    one: nsPerOp(() => rt(one), 20_000),
    eight: nsPerOp(() => rt(eight), 10_000),
    kvMBs: (1 << 20) / 1e6 / (nsPerOp(() => rt(kv), 20, 5) / 1e9),
  };
}

function table(results: Result[]): string[] {
  const base = (framed: boolean) => results.find((r) => r.framed === framed && r.name === protobufEs.name)!;
  const rows = results.map((r) => {
    const b = base(r.framed);
    return [
      r.name,
      r.framed ? "yes" : "no",
      `${(r.one / 1000).toFixed(2)} µs`,
      `${(b.one / r.one).toFixed(2)}×`,
      `${(r.eight / 1000).toFixed(2)} µs`,
      `${(b.eight / r.eight).toFixed(2)}×`,
      `${r.kvMBs.toFixed(0)} MB/s`,
      `${(r.kvMBs / b.kvMBs).toFixed(2)}×`,
    ];
  });
  const header = ["codec", "framing", "1-token frame", "vs protobuf-es", "8-token frame", "vs protobuf-es"];
  header.push("1 MiB KV chunk", "vs protobuf-es");
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)];
}

const contenders = [
  protobufEs,
  codecContender(createCodec("proto")),
  codecContender(createCodec("msgpack", { maxFrameBytes: 64 << 20 })),
  jsonReference,
];
const results = [false, true].flatMap((framed) => contenders.map((c) => measure(c, framed)));
console.log(
  `encode+decode round trip per CloudFrame, median of 7 rounds; node ${process.version}; ` +
    "ratios against the generic protobuf-es path with the same framing, measured in this run\n",
);
for (const l of table(results)) console.log(l);
const proto = results.find((r) => r.name === "proto (pdd codec)" && r.framed)!;
console.log(
  `\ntarget: proto 1-token round trip with framing < 2 µs → ${(proto.one / 1000).toFixed(2)} µs ${proto.one < 2000 ? "MET" : "NOT MET"}`,
);
