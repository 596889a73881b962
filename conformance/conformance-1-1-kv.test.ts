/**
 * The spec 1.1 codec, context and refinement cases (cloud-1-1-kv-cases.ts)
 * against the reference cloud over both codecs, and each failing against a
 * cloud that breaks its rule (a mutant behind a proxy).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { CLOUD_1_1_KV_CASES } from "./cloud-1-1-kv-cases.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import { MSGPACK_MUTANTS_1_1, PROTO_MUTANTS_1_1, startMsgpackMutant } from "./test/mutants-1-1-kv.js";
import { KEY, problems, startConformanceCloud } from "./test/reference-cloud.js";

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ ws: "127.0.0.1:0" });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

const ids = CLOUD_1_1_KV_CASES.map((c) => c.id);

describe("the spec 1.1 codec, context and refinement cases", () => {
  it("pass against the reference cloud (version 1.0) on both codecs", async () => {
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
