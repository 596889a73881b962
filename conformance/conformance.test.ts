/**
 * The suite passes against the reference cloud and the reference device on
 * every binding and codec, fails against each deliberately broken cloud in
 * the case that names the broken rule, and covers every MUST it can observe.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import type { CaseResult } from "./case.js";
import { coverage, coverageProblems, renderCoverage } from "./coverage.js";
import { execLauncher } from "./launcher.js";
import { runConformance, runDeviceConformance } from "./runner.js";
import { inProcessDevice } from "./test/in-process-device.js";
import { MUTANTS, startMutant } from "./test/mutants.js";

const KEY = "conformance-test-key";
const model = ensureDefaultModel("tiny");
let cloud: CloudPeer;
let engine: Engine;
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "pdd-conf-"));
  writeFileSync(join(dir, "keys"), `${KEY}\n`);
  // Short handshake and request-duration limits, so the cases about them run in seconds.
  cloud = await startCloud({
    model,
    threads: 1,
    logLevel: "silent",
    keysFile: join(dir, "keys"),
    limits: { handshakeTimeoutMs: 1000, maxRequestDurationMs: 3000 },
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
  engine = await Engine.load({ modelPath: model, threads: 1, sequences: 4 });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
  await engine.close();
});

/** Failures, and "not offered" outside the features the reference legitimately lacks. */
function problems(results: CaseResult[], mayBeNotOffered: string[]): string[] {
  return results
    .filter((r) => r.status === "fail" || (r.status === "not-offered" && !mayBeNotOffered.includes(r.id)))
    .map((r) => `${r.id} [${r.transport}/${r.codec}] ${r.status}: ${r.details}`);
}

describe("conformance suite against the reference cloud", () => {
  it.each(["ws", "grpc", "webtransport"] as const)(
    "passes every case over %s, with every codec the binding carries",
    async (key) => {
      const results = await runConformance({
        role: "cloud",
        target: cloud.urls[key]!,
        ca: cloud.certificate.cert,
        token: KEY,
        modelFile: model,
      });
      // The generated model never produces end-of-generation, so cloud.eos cannot run.
      expect(problems(results, ["cloud.eos"])).toEqual([]);
      expect(results.length).toBeGreaterThanOrEqual(40);
    },
  );
});

describe("conformance suite against the reference device", () => {
  it.each(["ws://127.0.0.1:0", "grpc://127.0.0.1:0", "https://127.0.0.1:0/pdd/v1"])(
    "passes every case listening on %s, with every codec",
    async (listen) => {
      const results = await runDeviceConformance({
        role: "device",
        listen,
        launcher: inProcessDevice(engine),
        modelFile: model,
      });
      expect(problems(results, [])).toEqual([]);
      expect(results.length).toBeGreaterThanOrEqual(14);
    },
  );

  it("drives `pdd device` through --exec and reads the answer from its stdout", async () => {
    const prompt = join(mkdtempSync(join(tmpdir(), "pdd-conf-")), "prompt.txt");
    writeFileSync(prompt, "The quick brown fox jumps over the lazy dog. ".repeat(60));
    const bin = join(import.meta.dirname, "..", "bin", "pdd.js");
    const launcher = execLauncher(
      `node ${bin} device --cloud {url} --codec {codec} --prompt-file ${prompt} --max-tokens 16 --threads 1`,
    );
    const results = await runDeviceConformance({
      role: "device",
      listen: "ws://127.0.0.1:0",
      launcher,
      codecs: ["proto"],
      filter: "device.served,device.takeover,device.connection.lost",
    });
    expect(problems(results, [])).toEqual([]);
    expect(results.map((r) => r.id)).toEqual(["device.served", "device.takeover.in-flight", "device.connection.lost"]);
  });
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
