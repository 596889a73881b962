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
import { KEY, MODEL, problems, startConformanceCloud } from "./test/reference-cloud.js";

let cloud: CloudPeer;
/** The same with a 1 s idle timeout, for the cases about the idle close. */
let idle: CloudPeer;
beforeAll(async () => {
  const all = { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" };
  [cloud, idle] = await Promise.all([
    startConformanceCloud(all),
    startConformanceCloud({ ws: "127.0.0.1:0" }, MODEL, { idleTimeoutMs: 1000 }),
  ]);
});
afterAll(async () => {
  await Promise.all([cloud.close({ drainSeconds: 0 }), idle.close({ drainSeconds: 0 })]);
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
    // The shared cloud keeps the 60 s idle timeout: the idle case runs against the other one, below.
    expect(problems(mine, ["cloud.crossed-goodbye"])).toEqual([]);
  });

  it("pass against a cloud with a short idle timeout (cloud.crossed-goodbye)", async () => {
    const results = await runConformance({
      role: "cloud",
      target: idle.urls.ws!,
      token: KEY,
      filter: "cloud.crossed-goodbye",
    });
    expect(results.map((r) => r.id)).toContain("cloud.crossed-goodbye");
    expect(problems(results, [])).toEqual([]);
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
        target: (m.idle ? idle : cloud).urls[m.transport]!,
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
