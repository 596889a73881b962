/**
 * The connection, gRPC, WebTransport and timer cases of spec 1.1: they pass
 * against the reference cloud on every binding, and each fails against a
 * cloud broken on its rule (test/mutants-1-1-conn.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { CLOUD_1_1_CONN_CASES } from "./cloud-1-1-conn-cases.js";
import { runConformance } from "./runner.js";
import { startMutant } from "./test/mutants.js";
import { PATCH_MUTANTS_1_1_CONN, PROXY_MUTANTS_1_1_CONN } from "./test/mutants-1-1-conn.js";
import { KEY, problems, startConformanceCloud } from "./test/reference-cloud.js";

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

const filter = CLOUD_1_1_CONN_CASES.map((c) => c.id).join(",");
const exact = (ids: string[]) => (r: { id: string }) => ids.includes(r.id);

describe("the spec 1.1 connection cases", () => {
  it.each(["ws", "grpc", "webtransport"] as const)("pass against the reference cloud over %s", async (key) => {
    const results = await runConformance({
      role: "cloud",
      target: cloud.urls[key]!,
      ca: cloud.certificate.cert,
      token: KEY,
      filter,
    });
    const mine = results.filter(exact(CLOUD_1_1_CONN_CASES.map((c) => c.id)));
    expect(mine.length).toBeGreaterThan(0);
    expect(problems(mine, [])).toEqual([]);
  });

  it.each(PROXY_MUTANTS_1_1_CONN.map((m) => [m.name, m] as const))("fail against a cloud that %s", async (_n, m) => {
    const proxy = await startMutant(cloud.urls.ws!, m, KEY);
    try {
      const results = await runConformance({ role: "cloud", target: proxy.url, codecs: ["proto"], filter: m.mustFail });
      expect(results.filter(exact([m.mustFail])).map((r) => r.status)).toEqual(["fail"]);
    } finally {
      await proxy.close();
    }
  });

  it.each(PATCH_MUTANTS_1_1_CONN.map((m) => [m.name, m] as const))("fail against a cloud that %s", async (_n, m) => {
    const undo = m.apply();
    try {
      const results = await runConformance({
        role: "cloud",
        target: cloud.urls[m.transport]!,
        ca: cloud.certificate.cert,
        token: KEY,
        codecs: ["proto"],
        filter: m.mustFail,
      });
      expect(results.filter(exact([m.mustFail])).map((r) => r.status)).toEqual(["fail"]);
    } finally {
      undo();
    }
  });
});
