/**
 * The spec 1.1 cases: the idle close against a cloud with a short idle
 * timeout on every binding (the shared test cloud keeps the 60 s default), and
 * each case failing against a cloud that keeps the 1.0 reference's behaviour
 * on its rule (a mutant behind a proxy).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import { MUTANTS_1_1 } from "./test/mutants-1-1.js";
import { KEY, MODEL, problems, startConformanceCloud } from "./test/reference-cloud.js";

let cloud: CloudPeer;
let idle: CloudPeer;
beforeAll(async () => {
  [cloud, idle] = await Promise.all([
    startConformanceCloud({ ws: "127.0.0.1:0" }),
    startConformanceCloud({ ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" }, MODEL, {
      idleTimeoutMs: 1000,
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([cloud.close({ drainSeconds: 0 }), idle.close({ drainSeconds: 0 })]);
});

describe("an idle connection", () => {
  it.each(["ws", "grpc", "webtransport"] as const)("is closed gracefully over %s (cloud.idle)", async (key) => {
    const results = await runConformance({
      role: "cloud",
      target: idle.urls[key]!,
      ca: idle.certificate.cert,
      token: KEY,
      filter: "cloud.idle",
    });
    expect(results.map((r) => r.id)).toContain("cloud.idle");
    expect(problems(results, [])).toEqual([]);
  });
});

describe("the spec 1.1 cases catch 1.0 behaviour", () => {
  it.each(MUTANTS_1_1.map((m) => [m.name, m] as const))("a cloud that %s fails the named case", async (_n, mutant) => {
    const proxy = await startMutant((mutant.idle ? idle : cloud).urls.ws!, mutant, KEY);
    try {
      const results = await runConformance({
        role: "cloud",
        target: proxy.url,
        codecs: ["proto"],
        waitMs: 2000,
        filter: mutant.mustFail,
      });
      const mine = results.filter((r) => r.id === mutant.mustFail);
      expect(mine.map((r) => r.status)).toEqual(["fail"]);
    } finally {
      await proxy.close();
    }
  });
});
