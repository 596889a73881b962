/**
 * The fuzz tests of a live reference cloud and device, as suites a test file
 * declares over the bindings it names: `npm test` fuzzes over WebSocket
 * (fuzz-cloud.test.ts, fuzz-device.test.ts), `npm run test:matrix` the same
 * cases over gRPC and WebTransport (fuzz-*-bindings.test.ts, vitest.matrix.ts).
 * @internal test support
 */
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CORPUS_FILE } from "../../cli/fuzz.js";
import { Engine, ensureDefaultModel } from "../../engine/index.js";
import { until } from "../../proto/test/until.js";
import { startCloud, type CloudPeer } from "../../reference-cloud/index.js";
import { certificateSha256 } from "../../transports/index.js";
import { fuzzCloud, replayInput } from "../fuzz.js";
import { fuzzDevice } from "../fuzz-device.js";
import { oracleOn } from "../../cli/conformance-oracle.js";
import type { Codec } from "../wire.js";
import { FUZZ_TIMEOUT_MS } from "./fuzz-share.js";
import { inProcessDevice } from "./in-process-device.js";

type Binding = "ws" | "grpc" | "webtransport";
/** One fuzz test: the binding (the device's listen URL), the codec and how many cases. */
export type FuzzRow<B> = readonly [B, Codec, number];

/**
 * FUZZ_CASES mutated cases per row against one cloud serving every binding, each followed by a
 * liveness Ping, and every 250 by a full answer equal to the one before fuzzing with nothing held
 * by the metrics (fuzz-liveness.ts); no crash, hang or unhandled rejection, and the heap is back
 * near where it started. `corpus`: also replay every corpus
 * input (inputs that once broke something) over every binding.
 */
export function describeCloudFuzz(rows: FuzzRow<Binding>[], o: { corpus: boolean }): void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  let cloud: CloudPeer;
  beforeAll(async () => {
    cloud = await startCloud({
      model: ensureDefaultModel("tiny"),
      threads: 1,
      logLevel: "silent",
      listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
      metricsPort: 0,
    });
  });
  afterAll(async () => {
    await cloud.close({ drainSeconds: 0 });
  });

  /** The heap once the cloud has closed every fuzz connection and freed every request. */
  const settle = async () => {
    const active = async () => (await cloud.metrics.activeSequences.get()).values[0]?.value ?? 0;
    const queued = async () => (await cloud.metrics.queueDepth.get()).values[0]?.value ?? 0;
    await until(
      async () => cloud.connections === 0 && (await active()) === 0 && (await queued()) === 0,
      "the cloud to close the fuzz connections and free their requests",
    );
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };

  describe("fuzzing the reference cloud", () => {
    it.each(rows)(
      "over %s (%s): %i cases, no crash or hang, heap back to its baseline",
      async (key, codec, cases) => {
        const before = await settle();
        const r = await fuzzCloud({
          target: cloud.urls[key]!,
          codec,
          cases,
          seed: 20261129,
          ca: cloud.certificate.cert,
          certHash: certificateSha256(cloud.certificate.cert),
          metrics: cloud.urls.metrics,
        });
        expect(r.cases).toBe(cases);
        // A full answer, equal to the one before fuzzing, after every 250 cases and at the end.
        expect(r.checks).toBe(Math.ceil(cases / 250));
        // Every close carried a typed code, and connections were both refused and kept.
        expect(Object.keys(r.closes).every((c) => Number(c) > 0)).toBe(true);
        expect(r.connections).toBeGreaterThan(1);
        expect(r.connections).toBeLessThan(cases);
        const after = await settle();
        expect(after - before, `heap grew from ${before} to ${after} bytes`).toBeLessThan(32 << 20);
      },
      FUZZ_TIMEOUT_MS,
    );

    if (!o.corpus) return;
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
}

/**
 * The suite plays a cloud with the device's own model (fuzz-device.ts) and mutates its frames, 100 per
 * device run: every run ends with an answer, the last (clean) one the greedy answer, and the IDs and KV
 * images reach the device's engine path (it asks for KV, and refuses IDs outside its vocabulary).
 */
export function describeDeviceFuzz(rows: FuzzRow<string>[]): void {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ modelPath: ensureDefaultModel("tiny"), threads: 1, sequences: 4 });
  });
  afterAll(async () => {
    await engine.close();
  });

  describe("fuzzing the reference device", () => {
    it.each(rows)(
      "listening on %s (%s): %i mutated cloud frames, every run ends with an answer",
      async (listen, codec, cases) => {
        const r = await fuzzDevice({
          listen,
          codec,
          // A fixed budget: the planner would recompute so short a prompt rather than ask for its image.
          launcher: inProcessDevice(engine, { maxTokens: 12, cloudBudget: 8 }),
          cases,
          seed: 20261129,
          framesPerRun: 100,
          oracle: oracleOn(engine),
        });
        expect(r.cases).toBe(cases);
        expect(r.runs).toBe(cases / 100 + 1); // and a clean run, whose answer is the greedy one
        // The device took the fuzzer for a cloud with its own model: it used the IDs and asked for the images.
        expect(r.sameModel).toBe(r.runs);
        expect(r.kvAsked).toBe(r.runs);
        expect(r.realImages).toBe(r.runs);
        expect(r.badIds).toBeGreaterThan(0);
        expect(r.idRefusals).toBeGreaterThan(0);
      },
      FUZZ_TIMEOUT_MS,
    );
  });
}
