/**
 * The spec 1.1 codec, context and refinement cases (cloud-1-1-kv-cases.ts)
 * against the reference cloud over both codecs, and each failing against a
 * cloud that breaks its rule (a mutant behind a proxy).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { CLOUD_1_1_KV_CASES } from "./cloud-1-1-kv-cases.js";
import { join } from "node:path";
import { VECTOR_MODEL, VECTORS_DIR } from "../spec/vectors/generate.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import {
  KV_HOLD_UNBOUNDED,
  MSGPACK_MUTANTS_1_1,
  PROTO_MUTANTS_1_1,
  SPEC_MODEL_MUTANTS,
  startMsgpackMutant,
} from "./test/mutants-1-1-kv.js";
import { KEY, MODEL, problems, startConformanceCloud } from "./test/reference-cloud.js";

/** The model of the spec's fingerprint and tokenization vectors. */
const SPEC_MODEL = join(VECTORS_DIR, VECTOR_MODEL);

let cloud: CloudPeer;
let specCloud: CloudPeer;
/** A cloud whose request-duration limit is longer than the KV hold limit, so that the hold is what ends a stalled transfer. */
let patient: CloudPeer;
beforeAll(async () => {
  [cloud, specCloud, patient] = await Promise.all([
    startConformanceCloud({ ws: "127.0.0.1:0" }),
    startConformanceCloud({ ws: "127.0.0.1:0" }, SPEC_MODEL),
    startConformanceCloud({ ws: "127.0.0.1:0", grpc: "127.0.0.1:0" }, MODEL, { maxRequestDurationMs: 60_000 }),
  ]);
});
afterAll(async () => {
  await Promise.all([cloud, specCloud, patient].map((c) => c.close({ drainSeconds: 0 })));
});

/** Cases that need the cloud to serve the spec's vector model. */
const SPEC_MODEL_CASES = ["cloud.fingerprints", "cloud.tokenization"];
const ids = CLOUD_1_1_KV_CASES.map((c) => c.id).filter((id) => !SPEC_MODEL_CASES.includes(id));

describe("the spec 1.1 codec, context and refinement cases", () => {
  it("pass against the reference cloud (version 1.1) on both codecs", async () => {
    const results = await runConformance({ role: "cloud", target: cloud.urls.ws!, token: KEY, filter: ids.join(",") });
    expect(new Set(results.map((r) => r.id))).toEqual(new Set(ids));
    expect(problems(results, [])).toEqual([]);
  });

  it.each(PROTO_MUTANTS_1_1.map((m) => [m.name, m] as const))("a cloud that %s fails the named case", async (_n, m) => {
    const proxy = await startMutant(cloud.urls.ws!, m, KEY);
    try {
      const results = await runConformance({ role: "cloud", target: proxy.url, codecs: ["proto"], filter: m.mustFail });
      expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
    } finally {
      await proxy.close();
    }
  });

  it.each(["ws", "grpc"] as const)(
    "end a stalled KV transfer by the hold limit over %s (cloud.kv.hold)",
    async (key) => {
      const results = await runConformance({
        role: "cloud",
        target: patient.urls[key]!,
        ca: patient.certificate.cert,
        token: KEY,
        codecs: ["proto"],
        filter: "cloud.kv.hold",
      });
      expect(results.map((r) => r.id)).toEqual(["cloud.kv.hold"]);
      expect(problems(results, [])).toEqual([]);
    },
  );

  it("fail a cloud that holds End for a stalled KV transfer without bound (cloud.kv.hold)", async () => {
    const proxy = await startMutant(patient.urls.ws!, KV_HOLD_UNBOUNDED, KEY);
    try {
      const results = await runConformance({
        role: "cloud",
        target: proxy.url,
        codecs: ["proto"],
        filter: "cloud.kv.hold",
      });
      expect(results.map((r) => r.status)).toEqual(["fail"]);
    } finally {
      await proxy.close();
    }
  });

  it("check the fingerprints, vocab_size and tokens of a cloud serving spec/vectors/spec.gguf", async () => {
    const results = await runConformance({
      role: "cloud",
      target: specCloud.urls.ws!,
      token: KEY,
      codecs: ["proto"],
      modelFile: SPEC_MODEL,
      filter: SPEC_MODEL_CASES.join(","),
    });
    expect(results.map((r) => r.id).sort()).toEqual(SPEC_MODEL_CASES);
    expect(problems(results, [])).toEqual([]);
  });

  it.each(SPEC_MODEL_MUTANTS.map((m) => [m.name, m] as const))(
    "a spec.gguf cloud that %s fails the named case",
    async (_n, m) => {
      const proxy = await startMutant(specCloud.urls.ws!, m, KEY);
      try {
        const results = await runConformance({
          role: "cloud",
          target: proxy.url,
          codecs: ["proto"],
          modelFile: SPEC_MODEL,
          filter: m.mustFail,
        });
        expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
      } finally {
        await proxy.close();
      }
    },
  );

  it.each(MSGPACK_MUTANTS_1_1.map((m) => [m.name, m] as const))(
    "a MessagePack cloud that %s fails the named case",
    async (_n, m) => {
      const proxy = await startMsgpackMutant(cloud.urls.ws!, m, KEY);
      try {
        const results = await runConformance({
          role: "cloud",
          target: proxy.url,
          codecs: ["msgpack"],
          filter: m.mustFail,
        });
        expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
      } finally {
        await proxy.close();
      }
    },
  );
});
