/**
 * The reference cloud as the conformance tests run it: behind a credential,
 * with short handshake and request-duration limits so that the cases about
 * them run in seconds (3 s for the handshake: a TLS handshake on a machine
 * beside two busy processes takes more than 1 s).
 * @internal test support
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDefaultModel } from "../../engine/index.js";
import { startCloud, type CloudPeer } from "../../reference-cloud/index.js";
import { expect } from "vitest";
import { runConformance } from "../runner.js";

export const KEY = "conformance-test-key";
export const MODEL = ensureDefaultModel("tiny");

export function startConformanceCloud(
  listen: {
    ws?: string;
    grpc?: string;
    webtransport?: string;
  },
  model = MODEL,
  limits: { idleTimeoutMs?: number; maxRequestDurationMs?: number } = {},
  /** The highest 1.x minor the cloud negotiates (startCloud's option). */
  protocolMinor?: number,
): Promise<CloudPeer> {
  const dir = mkdtempSync(join(tmpdir(), "pdd-conf-"));
  writeFileSync(join(dir, "keys"), `${KEY}\n`);
  return startCloud(
    {
      model,
      threads: 1,
      logLevel: "silent",
      keysFile: join(dir, "keys"),
      // 8 s, not shorter: cloud.request.context-full prefills 4,095 tokens, which took 3.0-3.6 s at load
      // average 11-12, and two paced answers of cloud.sampling.greedy were cut at 11 of 24 tokens under a 3 s
      // limit. cloud.request.max-duration waits this long once per run.
      limits: { handshakeTimeoutMs: 3000, maxRequestDurationMs: 8000, ...limits },
      listen,
    },
    { protocolMinor },
  );
}

/** Failures, and "not offered" outside the features the reference legitimately lacks. */
export function problems(
  results: { id: string; transport: string; codec: string; status: string; details: string }[],
  mayBeNotOffered: string[],
): string[] {
  return results
    .filter((r) => r.status === "fail" || (r.status === "not-offered" && !mayBeNotOffered.includes(r.id)))
    .map((r) => `${r.id} [${r.transport}/${r.codec}] ${r.status}: ${r.details}`);
}

/** The cases the reference cloud cannot run on the tiny model with the test limits, and where they run instead. */
const ELSEWHERE = [
  // The tiny model never produces end-of-generation: conformance-eos.test.ts.
  "cloud.eos",
  // The default idle timeout is 60 s: conformance-1-1.test.ts and conformance-1-1-conn.test.ts.
  "cloud.idle",
  "cloud.crossed-goodbye",
  // The spec's vector model: conformance-1-1-kv.test.ts.
  "cloud.tokenization",
  // A model without a byte token: conformance-tok.test.ts.
  "cloud.text.untokenizable",
];

/** Every case against the reference cloud over one of its bindings, with `codecs`: no problem, and at least 40 cases a codec. */
export async function expectEveryCasePasses(
  cloud: CloudPeer,
  key: "ws" | "grpc" | "webtransport",
  codecs: ("proto" | "msgpack")[],
): Promise<void> {
  const results = await runConformance({
    role: "cloud",
    target: cloud.urls[key]!,
    codecs,
    ca: cloud.certificate.cert,
    token: KEY,
    modelFile: MODEL,
  });
  expect(problems(results, ELSEWHERE)).toEqual([]);
  expect(results.length).toBeGreaterThanOrEqual(40 * codecs.length);
}
