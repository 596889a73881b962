/**
 * The flags `pdd device` (and `pdd device serve`) share for reaching a cloud
 * and for emulating a slower device, checked before anything loads: a typo in
 * the URL is a usage error (exit 2), not a silent local-only run (issue 16).
 */
import { PHONE, PHONE_NPU } from "../engine/index.js";
import { parseEndpoint, URL_SCHEMES, type ClientOptions } from "../transports/index.js";
import { numberFlag, readFileFlag, UsageError } from "./kit.js";

export const CLOUD_FLAGS = {
  cloud: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  "cert-sha256": { type: "string" },
  codec: { type: "string" },
  "emulate-ms-per-token": { type: "string" },
  "device-profile": { type: "string" },
} as const;

interface CloudFlagValues {
  cloud?: string;
  token?: string;
  ca?: string;
  "cert-sha256"?: string;
  codec?: string;
}

/** The cloud URL, checked; undefined without one. `flag` names it in the usage error. */
export function cloudUrl(url: string | undefined, flag = "--cloud"): string | undefined {
  if (url === undefined) return undefined;
  let ep: ReturnType<typeof parseEndpoint>;
  try {
    ep = parseEndpoint(url);
  } catch (e) {
    throw new UsageError(`${flag}: ${(e as Error).message}`);
  }
  if (!ep.url.hostname) throw new UsageError(`${flag}: "${url}" has no host`);
  if (!URL_SCHEMES.includes(ep.url.protocol.slice(0, -1))) throw new UsageError(`${flag}: unsupported scheme`);
  return url;
}

/** The transport client's options from the flags: credential, trust, codec. */
export function clientOptions(v: CloudFlagValues): ClientOptions {
  const url = cloudUrl(v.cloud);
  const transport = url ? parseEndpoint(url).transport : undefined;
  if (v.codec !== undefined && v.codec !== "proto" && v.codec !== "msgpack")
    throw new UsageError("--codec must be proto or msgpack");
  if (v.codec === "msgpack" && transport === "grpc")
    throw new UsageError("--codec msgpack: the gRPC binding carries only proto; use ws://, wss:// or https://");
  const hashes = v["cert-sha256"] === undefined ? undefined : [certHash(v["cert-sha256"])];
  if (hashes && transport !== "webtransport")
    throw new UsageError("--cert-sha256 pins a WebTransport certificate: it needs an https:// --cloud URL");
  return {
    authToken: v.token,
    ca: readFileFlag("ca", v.ca),
    codec: v.codec as ClientOptions["codec"],
    ...(hashes ? { serverCertificateHashes: hashes } : {}),
  };
}

/** A SHA-256 as `pdd cloud` prints it (64 hex digits; colons allowed, as browsers show it). */
function certHash(hex: string): Uint8Array {
  const clean = hex.replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(clean))
    throw new UsageError(`--cert-sha256 must be 64 hex digits (pdd cloud prints webtransportCertSha256), got "${hex}"`);
  return new Uint8Array(Buffer.from(clean, "hex"));
}

/** The published device profiles --device-profile names (engine/profiles.ts). */
const DEVICE_PROFILES = { phone: PHONE, "phone-npu": PHONE_NPU } as const;

/**
 * Extra milliseconds per local token, so a fast machine behaves like a phone:
 * --emulate-ms-per-token N for both prefill and decode, or a published
 * profile's own rates with --device-profile.
 */
export function emulation(v: {
  "emulate-ms-per-token"?: string;
  "device-profile"?: string;
}): { prefillMsPerToken: number; decodeMsPerToken: number } | undefined {
  const ms = v["emulate-ms-per-token"];
  const name = v["device-profile"];
  if (ms !== undefined && name !== undefined)
    throw new UsageError("give --emulate-ms-per-token or --device-profile, not both");
  if (ms !== undefined) {
    const n = numberFlag("emulate-ms-per-token", ms, 0, 0, 10_000);
    return { prefillMsPerToken: n, decodeMsPerToken: n };
  }
  if (name === undefined) return undefined;
  const p = DEVICE_PROFILES[name as keyof typeof DEVICE_PROFILES];
  if (!p) throw new UsageError(`--device-profile must be one of ${Object.keys(DEVICE_PROFILES).join(", ")}`);
  return { prefillMsPerToken: 1000 / p.prefillTokPerS, decodeMsPerToken: 1000 / p.decodeTokPerS };
}
