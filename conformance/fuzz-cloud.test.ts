/**
 * Fuzzing a live reference cloud over every binding: FUZZ_CASES mutated cases
 * per binding (2,000 in `npm test`; PDD_FUZZ_CASES for long runs), each
 * followed by a liveness Ping; no crash, hang or unhandled rejection, the
 * cloud serves fresh connections afterwards, and its heap is back near where
 * it started. Every corpus input (inputs that once broke something) is
 * replayed. The device's share is fuzz-device.test.ts.
 */
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { until } from "../proto/test/until.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { certificateSha256 } from "../transports/index.js";
import { CORPUS_FILE } from "../cli/fuzz.js";
import { fuzzCloud, replayInput } from "./fuzz.js";
import { FUZZ_CASES, FUZZ_CASES_MSGPACK, FUZZ_TIMEOUT_MS } from "./test/fuzz-share.js";
import type { Codec } from "./wire.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startCloud({
    model: ensureDefaultModel("tiny"),
    threads: 1,
    logLevel: "silent",
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
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
  it.each([
    ["ws", "proto", FUZZ_CASES],
    ["ws", "msgpack", FUZZ_CASES_MSGPACK],
    ["grpc", "proto", FUZZ_CASES],
    ["webtransport", "proto", FUZZ_CASES],
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
    FUZZ_TIMEOUT_MS,
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
