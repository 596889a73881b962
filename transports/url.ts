/**
 * The URL conventions of the reference tools (spec §10.1): the scheme picks
 * the binding. `pdd.v1` itself does not depend on them.
 */
import { ErrorCode, PddError, type CodecName } from "../proto/index.js";
import type { TransportName } from "./message-stream.js";

export interface Endpoint {
  transport: Exclude<TransportName, "memory">;
  tls: boolean;
  host: string;
  port: number;
  /** Path (and query) as given, "/" when empty. */
  path: string;
  url: URL;
}

const SCHEMES: Record<string, { transport: Endpoint["transport"]; tls: boolean; port: number }> = {
  "ws:": { transport: "websocket", tls: false, port: 80 },
  "wss:": { transport: "websocket", tls: true, port: 443 },
  "grpc:": { transport: "grpc", tls: false, port: 80 },
  "grpcs:": { transport: "grpc", tls: true, port: 443 },
  "https:": { transport: "webtransport", tls: true, port: 443 },
};

export const URL_SCHEMES = Object.keys(SCHEMES).map((s) => s.slice(0, -1));

/** Parses a cloud address; an unknown scheme or bad URL is INVALID_ARGUMENT. */
export function parseEndpoint(address: string): Endpoint {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new PddError(ErrorCode.INVALID_ARGUMENT, `"${address}" is not a URL (expected e.g. ws://127.0.0.1:4100/pdd)`);
  }
  const s = SCHEMES[url.protocol];
  if (!s) {
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      `unsupported scheme "${url.protocol}" in ${address}; use one of ${URL_SCHEMES.map((x) => `${x}://`).join(", ")}`,
    );
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return {
    transport: s.transport,
    tls: s.tls,
    host,
    port: url.port ? Number(url.port) : s.port,
    path: `${url.pathname || "/"}${url.search}`,
    url,
  };
}

/** The codec a WebTransport URL asks for with `?codec=` (spec PDD-WT-001). */
export function codecFromQuery(path: string): CodecName | "invalid" {
  const q = path.indexOf("?");
  const codec = q < 0 ? null : new URLSearchParams(path.slice(q + 1)).get("codec");
  if (codec === null || codec === "proto") return "proto";
  if (codec === "msgpack") return "msgpack";
  return "invalid";
}
