/**
 * The suite passes against the reference cloud on every binding it drives,
 * fails against each deliberately broken cloud in the case that names the
 * broken rule, and its coverage table is current.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { coverage, renderCoverage } from "./coverage.js";
import { runConformance } from "./runner.js";
import { MUTANTS, startMutant } from "./test/mutants.js";

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startCloud({ model: ensureDefaultModel("tiny"), threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" } });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("conformance suite against the reference cloud", () => {
  // WebTransport targets run (`pdd conformance --target https://…`) but are not
  // in this test yet: over WebTransport the process aborts with a native
  // std::bad_alloc in Node's HTTP/2 core (an outgoing buffer growing without
  // bound) when cloud.refine follows cloud.kv.stream — a bug the suite found,
  // recorded in conformance/README.md.
  it.each([
    ["websocket", "ws"],
    ["grpc", "grpc"],
  ] as const)("passes every case over %s, with every codec the binding carries", async (_name, key) => {
    const results = await runConformance({ role: "cloud", target: cloud.urls[key]!, ca: cloud.certificate.cert });
    const failed = results.filter((r) => r.status !== "pass").map((r) => `${r.id} [${r.codec}]: ${r.details}`);
    expect(failed).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(25);
  });
});

describe("the suite catches broken clouds", () => {
  it.each(MUTANTS.map((m) => [m.name, m] as const))("a cloud that %s fails the named case", async (_name, mutant) => {
    const proxy = await startMutant(cloud.urls.ws!, mutant);
    try {
      const results = await runConformance({ role: "cloud", target: proxy.url, codecs: ["proto"], waitMs: 2000 });
      const failed = results.filter((r) => r.status === "fail").map((r) => r.id);
      expect(failed).toContain(mutant.mustFail);
    } finally {
      await proxy.close();
    }
  });
});

describe("coverage", () => {
  it("conformance/COVERAGE.md is current", () => {
    const committed = readFileSync(join(import.meta.dirname, "COVERAGE.md"), "utf8");
    expect(committed === renderCoverage(coverage()), "stale: npm run conformance:coverage").toBe(true);
  });
});
