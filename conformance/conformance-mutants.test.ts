/**
 * The suite fails against each deliberately broken cloud in the case that
 * names the broken rule, and covers every MUST it can observe. The mutants
 * run one after another: a case that must fail should fail for its own
 * reason, not because another mutant's requests fill the cloud.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { coverage, coverageProblems, renderCoverage } from "./coverage.js";
import { runConformance } from "./runner.js";
import { MUTANTS, startMutant } from "./test/mutants.js";
import { KEY, startConformanceCloud } from "./test/reference-cloud.js";

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ ws: "127.0.0.1:0" });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("the suite catches broken clouds", () => {
  it.each(MUTANTS.map((m) => [m.name, m] as const))("a cloud that %s fails the named case", async (_name, mutant) => {
    const proxy = await startMutant(cloud.urls.ws!, mutant, KEY);
    try {
      const results = await runConformance({
        role: "cloud",
        target: proxy.url,
        codecs: ["proto"],
        waitMs: 2000,
        filter: mutant.mustFail,
      });
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
  it("every MUST has a case or a stated reason a black-box suite cannot observe it", () => {
    expect(coverageProblems()).toEqual([]);
  });
});
