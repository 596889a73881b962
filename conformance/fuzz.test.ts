/**
 * Fuzzing a live reference cloud over every binding: 20,000 mutated cases per
 * binding, each followed by a liveness Ping; no crash, hang or unhandled
 * rejection, the cloud serves fresh connections afterwards, and its heap is
 * back near where it started. Every corpus input (inputs that once broke
 * something) is replayed.
 */
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { certificateSha256 } from "../transports/index.js";
import { CORPUS_FILE } from "../cli/fuzz.js";
import { fuzzCloud, fuzzDevice, replayInput } from "./fuzz.js";
import { inProcessDevice } from "./test/in-process-device.js";
import type { Codec } from "./wire.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let cloud: CloudPeer;
let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: ensureDefaultModel("tiny"), threads: 1, sequences: 4 });
  cloud = await startCloud({
    model: ensureDefaultModel("tiny"),
    threads: 1,
    logLevel: "silent",
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
});

const settle = async () => {
  await new Promise((r) => setTimeout(r, 300));
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

describe("fuzzing the reference cloud", () => {
  it.each([
    ["ws", "proto", 20_000],
    ["ws", "msgpack", 5_000],
    ["grpc", "proto", 20_000],
    ["webtransport", "proto", 20_000],
  ] as const)(
    "over %s (%s): %i cases, no crash or hang, heap back to its baseline",
    async (key, codec, cases) => {
      const before = await settle();
      const r = await fuzzCloud({
        target: cloud.urls[key]!,
        codec: codec as Codec,
        cases,
        seed: 20261129,
        ca: cloud.certificate.cert,
        certHash: certificateSha256(cloud.certificate.cert),
      });
      expect(r.cases).toBe(cases);
      // Every close carried a typed code, and connections were both refused and kept.
      expect(Object.keys(r.closes).every((c) => Number(c) > 0)).toBe(true);
      expect(r.connections).toBeGreaterThan(1);
      expect(r.connections).toBeLessThan(cases);
      const after = await settle();
      expect(after - before, `heap grew from ${before} to ${after} bytes`).toBeLessThan(32 << 20);
    },
    300_000,
  );

  it("survives every input in the corpus", async () => {
    const corpus = JSON.parse(readFileSync(CORPUS_FILE, "utf8")) as { codec: Codec; hex: string[]; note: string }[];
    expect(corpus.length).toBeGreaterThan(0);
    for (const key of ["ws", "grpc", "webtransport"] as const) {
      for (const input of corpus) {
        if (key === "grpc" && input.codec !== "proto") continue;
        await replayInput(
          {
            target: cloud.urls[key]!,
            codec: input.codec,
            ca: cloud.certificate.cert,
            certHash: certificateSha256(cloud.certificate.cert),
          },
          input,
        );
      }
    }
  });
});

describe("fuzzing the reference device", () => {
  it.each([
    ["ws://127.0.0.1:0", "proto", 20_000],
    ["ws://127.0.0.1:0", "msgpack", 5_000],
    ["grpc://127.0.0.1:0", "proto", 20_000],
    ["https://127.0.0.1:0/pdd/v1", "proto", 20_000],
  ] as const)(
    "listening on %s (%s): %i mutated cloud frames, every run ends with an answer",
    async (listen, codec, cases) => {
      const r = await fuzzDevice({
        listen,
        codec: codec as Codec,
        launcher: inProcessDevice(engine),
        cases,
        seed: 20261129,
        framesPerRun: 100,
      });
      expect(r.cases).toBe(cases);
      expect(r.runs).toBe(cases / 100);
    },
    300_000,
  );
});
