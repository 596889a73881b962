/**
 * The cases of rules that apply once 1.1 is negotiated (PDD-VER-007) against
 * the reference cloud speaking 1.1, and against one told to negotiate 1.0
 * at most (startCloud's protocolMinor), which must keep the 1.0 rules.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import { PROTO_MUTANTS_AT_1_0, PROTO_MUTANTS_AT_1_1 } from "./test/mutants-1-1-kv.js";
import { KEY, MODEL, problems, startConformanceCloud } from "./test/reference-cloud.js";

const CASES = ["cloud.request.context-full", "cloud.refine.defaults"];

let cloud: CloudPeer;
let cloud10: CloudPeer;
beforeAll(async () => {
  [cloud, cloud10] = await Promise.all([
    startConformanceCloud({ ws: "127.0.0.1:0" }),
    startConformanceCloud({ ws: "127.0.0.1:0" }, MODEL, {}, 0),
  ]);
});
afterAll(async () => {
  await Promise.all([cloud, cloud10].map((c) => c.close({ drainSeconds: 0 })));
});

async function passAt(peer: CloudPeer, minor: number): Promise<void> {
  const results = await runConformance({ role: "cloud", target: peer.urls.ws!, token: KEY, filter: CASES.join(",") });
  expect(new Set(results.map((r) => r.id))).toEqual(new Set(CASES));
  expect(problems(results, [])).toEqual([]);
  const log = results.flatMap((r) => r.log).join("\n");
  expect(log).toContain(`"version":{"major":1,"minor":${minor}}`);
}

describe("a cloud that negotiates 1.1", () => {
  it("ends a full context with CONTEXT_FULL and grants refine: {}", async () => {
    await passAt(cloud, 1);
  });

  it("at 1.0 ends a full context with BUDGET_EXHAUSTED and refuses refine: {} (PDD-VER-007)", async () => {
    await passAt(cloud10, 0);
  });

  it.each([
    ...PROTO_MUTANTS_AT_1_1.map((m) => [m.name, m, 1] as const),
    ...PROTO_MUTANTS_AT_1_0.map((m) => [m.name, m, 0] as const),
  ])("a cloud that %s fails the named case", async (_n, m, minor) => {
    const proxy = await startMutant((minor === 1 ? cloud : cloud10).urls.ws!, m, KEY);
    try {
      const results = await runConformance({ role: "cloud", target: proxy.url, codecs: ["proto"], filter: m.mustFail });
      expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
    } finally {
      await proxy.close();
    }
  });
});
