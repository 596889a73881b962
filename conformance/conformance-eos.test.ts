/**
 * End of generation, on every binding and codec: a cloud serving the
 * generated tiny-eos model, whose answers end, must end them with EOS
 * (PDD-IDX-005). "Not offered" counts as a failure here: this model always
 * ends its answer. The broken cloud (EOS reported as BUDGET_EXHAUSTED, the
 * 1.0 reference's bug) must fail the case.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import type { CloudPeer } from "../reference-cloud/index.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import { EOS_AS_BUDGET } from "./test/mutants-1-1.js";
import { KEY, problems, startConformanceCloud } from "./test/reference-cloud.js";

const MODEL = ensureDefaultModel("tiny-eos");
let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" }, MODEL);
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("a cloud whose model ends its answers", () => {
  it.each(["ws", "grpc", "webtransport"] as const)("passes cloud.eos over %s, with every codec", async (key) => {
    const results = await runConformance({
      role: "cloud",
      target: cloud.urls[key]!,
      ca: cloud.certificate.cert,
      token: KEY,
      filter: "cloud.eos",
    });
    expect(results.map((r) => r.id)).toContain("cloud.eos");
    expect(problems(results, [])).toEqual([]);
  });

  it("fails cloud.eos when it reports EOS as BUDGET_EXHAUSTED", async () => {
    const proxy = await startMutant(cloud.urls.ws!, EOS_AS_BUDGET, KEY);
    try {
      const results = await runConformance({
        role: "cloud",
        target: proxy.url,
        codecs: ["proto"],
        filter: "cloud.eos",
      });
      expect(results.map((r) => [r.id, r.status])).toEqual([["cloud.eos", "fail"]]);
    } finally {
      await proxy.close();
    }
  });
});
