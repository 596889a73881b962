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
      limits: { handshakeTimeoutMs: 3000, maxRequestDurationMs: 3000, ...limits },
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
