/**
 * The cases of rules that apply once 1.1 is negotiated (PDD-VER-007) against
 * the reference cloud speaking 1.1. Until the lead sets PROTOCOL_MINOR to 1
 * (issue 14), the cloud is told to (startCloud's protocolMinor).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import { PROTO_MUTANTS_AT_1_1 } from "./test/mutants-1-1-kv.js";
import { KEY, MODEL, problems, startConformanceCloud } from "./test/reference-cloud.js";

const CASES = ["cloud.request.context-full", "cloud.refine.defaults"];

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ ws: "127.0.0.1:0" }, MODEL, {}, 1);
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("a cloud that negotiates 1.1", () => {
  it("ends a full context with CONTEXT_FULL and grants refine: {}", async () => {
    const results = await runConformance({
      role: "cloud",
      target: cloud.urls.ws!,
      token: KEY,
      filter: CASES.join(","),
    });
    expect(new Set(results.map((r) => r.id))).toEqual(new Set(CASES));
    expect(problems(results, [])).toEqual([]);
    const log = results.flatMap((r) => r.log).join("\n");
    expect(log).toContain('"version":{"major":1,"minor":1}');
  });

  it.each(PROTO_MUTANTS_AT_1_1.map((m) => [m.name, m] as const))(
    "a cloud that %s fails the named case",
    async (_n, m) => {
      const proxy = await startMutant(cloud.urls.ws!, m, KEY);
      try {
        const results = await runConformance({
          role: "cloud",
          target: proxy.url,
          codecs: ["proto"],
          filter: m.mustFail,
        });
        expect(results.filter((r) => r.id === m.mustFail).map((r) => r.status)).toEqual(["fail"]);
      } finally {
        await proxy.close();
      }
    },
  );
});
