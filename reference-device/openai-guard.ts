/**
 * Who may use the local API. A local endpoint that spends the user's cloud
 * credential must not be usable by any web page the user visits:
 *
 * - **Host** (DNS rebinding): on a loopback bind only loopback names and IP
 *   literals are served (`--allowed-hosts` adds names; `*` allows any). A
 *   page on a rebound name (evil.example → 127.0.0.1) sends `Host:
 *   evil.example` and is refused. On other binds any Host is served unless
 *   `--allowed-hosts` is given.
 * - **Origin**: a browser request from another origin is refused unless
 *   `--cors-origin` lists it (or is `*`); listed origins get CORS headers and
 *   preflights (OPTIONS) are answered for them.
 * - **Content-Type**: a POST body must be `application/json`; a page's
 *   "simple" cross-origin POST (text/plain, no preflight) never is.
 * - **API key** (`--api-key`, or $PDD_SERVE_API_KEY): `Authorization: Bearer
 *   KEY`, compared as SHA-256 digests in constant time; /health stays open.
 * @internal
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError } from "./openai-errors.js";

export interface GuardOptions {
  /** The address the server is bound to. */
  bindHost: string;
  /** Extra Host names served ("*": any; ".example.com": that domain and its subdomains). Default: none. */
  allowedHosts?: readonly string[];
  /** Origins allowed cross-origin, exact ("https://app.example") or "*". Default: none. */
  corsOrigins?: readonly string[];
  apiKey?: string;
}

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1"]);
const isLoopback = (host: string) => LOOPBACK_NAMES.has(host) || host.endsWith(".localhost") || host.startsWith("127.");
const digest = (s: string) => createHash("sha256").update(s).digest();

/** The hostname of a Host header or of an origin's authority, without port or IPv6 brackets, lower case. */
export function hostname(authority: string): string {
  const a = authority.trim().toLowerCase();
  if (a.startsWith("[")) return a.slice(1, a.indexOf("]") > 0 ? a.indexOf("]") : undefined);
  const colon = a.lastIndexOf(":");
  return colon >= 0 && a.indexOf(":") === colon ? a.slice(0, colon) : a;
}

export class Guard {
  private readonly keyDigest: Buffer | undefined;
  private readonly loopbackBind: boolean;

  constructor(private readonly o: GuardOptions) {
    this.keyDigest = o.apiKey ? digest(o.apiKey) : undefined;
    this.loopbackBind = isLoopback(hostname(o.bindHost));
  }

  /** Host: served, or refused against DNS rebinding. */
  checkHost(req: IncomingMessage): void {
    const name = hostname(req.headers.host ?? "");
    if (name === "" || isIP(name) !== 0 || this.hostAllowed(name)) return;
    throw new ApiError(
      403,
      `Host "${name.slice(0, 100)}" is not served here (see --allowed-hosts)`,
      "permission_error",
      null,
      "host_not_allowed",
    );
  }

  private hostAllowed(name: string): boolean {
    const extra = this.o.allowedHosts ?? [];
    if (extra.includes("*") || (!this.loopbackBind && extra.length === 0)) return true;
    if (isLoopback(name)) return true;
    return extra.some((h) => (h.startsWith(".") ? name === h.slice(1) || name.endsWith(h) : name === h.toLowerCase()));
  }

  /**
   * Origin: absent (not a browser) or the server's own is served; another is
   * served only when listed, and then gets the CORS headers.
   */
  checkOrigin(req: IncomingMessage, res: ServerResponse): void {
    const origin = req.headers.origin;
    if (origin === undefined) return;
    const listed = this.o.corsOrigins ?? [];
    if (listed.includes("*") || listed.includes(origin)) {
      res.setHeader("access-control-allow-origin", listed.includes("*") ? "*" : origin);
      res.setHeader("vary", "Origin");
      return;
    }
    let own = false;
    try {
      own = new URL(origin).host === (req.headers.host ?? "").toLowerCase();
    } catch {
      own = false;
    }
    if (!own)
      throw new ApiError(
        403,
        `Origin "${origin.slice(0, 100)}" is not allowed (see --cors-origin)`,
        "permission_error",
        null,
        "origin_not_allowed",
      );
  }

  /** A CORS preflight, after checkHost and checkOrigin passed. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    const asked = req.headers["access-control-request-headers"];
    res.writeHead(204, {
      allow: "GET, POST, OPTIONS",
      "access-control-allow-methods": "GET, POST, OPTIONS",
      "access-control-allow-headers": typeof asked === "string" ? asked : "authorization, content-type",
      "access-control-max-age": "600",
    });
    res.end();
  }

  checkKey(req: IncomingMessage): void {
    if (!this.keyDigest) return;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "");
    if (m && timingSafeEqual(digest(m[1]!.trim()), this.keyDigest)) return;
    throw new ApiError(
      401,
      m ? "Incorrect API key provided." : "You didn't provide an API key: send Authorization: Bearer KEY.",
      "invalid_request_error",
      null,
      "invalid_api_key",
    );
  }

  checkJson(req: IncomingMessage): void {
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (type === "application/json") return;
    throw new ApiError(
      415,
      `Content-Type must be application/json, not "${type.slice(0, 60)}"`,
      "invalid_request_error",
      null,
      "unsupported_media_type",
    );
  }
}
