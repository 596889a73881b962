/**
 * How a WebTransport client trusts the server's certificate, the way the wss://
 * and grpcs:// clients do (issue 16: `ca` used to be pinned by hash, so a
 * CA-signed leaf or a self-signed certificate valid over 14 days failed here
 * and worked there).
 *
 * The library verifies with Node's default CAs unless it is given certificate
 * hashes, and has no `ca` option. Its HTTP/2 client opens the connection with
 * `http2.connect`, which calls `tls.connect`: a CA registered here for the
 * URL's host and port is added to that call, so the chain and the host name
 * are verified by Node against it. A `ca` that is itself a self-signed leaf
 * valid at most 14 days is pinned by hash instead (WebTransport's
 * serverCertificateHashes, `pinnableHash`), as before, so such a certificate
 * made for other host names still works. @internal
 */
import http2 from "node:http2";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { certificateSha256 } from "../tls.js";

const cas = new Map<string, string>();
let installed = false;

/** Adds `ca` to Node's TLS verification of connections to host:port, until the returned function runs. */
export function trustCaFor(host: string, port: number, ca: string): () => void {
  install();
  const key = `${host}:${port}`;
  cas.set(key, ca);
  return () => {
    if (cas.get(key) === ca) cas.delete(key);
  };
}

/** The hash to pin when `ca` is a self-signed certificate WebTransport accepts by hash; else none. */
export function pinnableHash(ca: string): Uint8Array | undefined {
  try {
    const cert = new X509Certificate(ca);
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    // Self-signed by name (checkIssued would also ask for keyCertSign, which a leaf does not have).
    return cert.issuer === cert.subject && days <= 14 ? certificateSha256(ca) : undefined;
  } catch {
    return undefined;
  }
}

type Connect = typeof tls.connect;

function install(): void {
  if (installed) return;
  installed = true;
  const original: Connect = tls.connect;
  const patched = (...args: unknown[]) => {
    const [a, b, c] = args;
    // http2.connect calls tls.connect(port, host, options), the port as a string.
    if ((typeof a === "string" || typeof a === "number") && typeof b === "string" && c && typeof c === "object") {
      const options = c as tls.ConnectionOptions;
      const ca = cas.get(`${b.replace(/^\[(.*)\]$/, "$1")}:${a}`);
      if (ca && options.ca === undefined) return original(Number(a), b, { ...options, ca });
    }
    return (original as (...x: unknown[]) => tls.TLSSocket)(...args);
  };
  tls.connect = patched as Connect;
}

/**
 * Why a WebTransport session did not open, when the library says only
 * "Opening handshake failed.": one TLS connection as the library would make
 * it (same CA or pinned hashes), and what went wrong with it; undefined when
 * it succeeds (the failure was past TLS).
 */
export function probeTls(
  host: string,
  port: number,
  trust: { ca?: string; hashes?: Uint8Array[] },
  timeoutMs = 5_000,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host,
      port,
      ...(trust.ca && !trust.hashes ? { ca: trust.ca } : {}),
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
      ALPNProtocols: ["h2"],
      rejectUnauthorized: false,
    });
    const done = (why: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(`no TLS handshake within ${timeoutMs} ms`), timeoutMs);
    socket.once("error", (e: NodeJS.ErrnoException) => done(`${e.code ?? ""} ${e.message}`.trim()));
    socket.once("secureConnect", () => {
      const cert = socket.getPeerCertificate();
      if (trust.hashes) {
        const seen = Buffer.from(cert.fingerprint256.replace(/:/g, ""), "hex");
        const pinned = trust.hashes.some((h) => seen.equals(Buffer.from(h)));
        const days = (Date.parse(cert.valid_to) - Date.parse(cert.valid_from)) / 86_400_000;
        if (!pinned) return done(`TLS: the certificate's SHA-256 ${seen.toString("hex")} is not the pinned one`);
        if (days > 14)
          return done(`TLS: a pinned certificate must be valid at most 14 days (this one: ${Math.round(days)})`);
        return done(undefined);
      }
      done(socket.authorized ? undefined : `TLS: certificate not trusted (${String(socket.authorizationError)})`);
    });
  });
}

/**
 * The HTTP status a WebTransport server answers the session's extended
 * CONNECT with, when TLS was fine and the library still failed: 401 (the
 * credential), 404 (the path), 400 (the codec). One HTTP/2 request, trusting
 * the certificate as the session did; undefined when the server accepts it.
 */
export function probeSessionStatus(url: URL, trust: { ca?: string; hashes?: Uint8Array[] }, timeoutMs = 5_000) {
  return new Promise<number | undefined>((resolve) => {
    const client = http2.connect(url.origin, {
      ...(trust.ca && !trust.hashes ? { ca: trust.ca } : {}),
      rejectUnauthorized: false, // checked below, as the session does
    });
    const done = (status: number | undefined) => {
      clearTimeout(timer);
      client.destroy();
      resolve(status);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    client.once("error", () => done(undefined));
    client.once("remoteSettings", () => {
      // The URL carries the credential: only to the server the session would have trusted.
      const socket = client.socket as tls.TLSSocket;
      const seen = Buffer.from(socket.getPeerCertificate().fingerprint256.replace(/:/g, ""), "hex");
      const trusted = trust.hashes ? trust.hashes.some((h) => seen.equals(Buffer.from(h))) : socket.authorized;
      if (!trusted) return done(undefined);
      const req = client.request({
        ":method": "CONNECT",
        ":protocol": "webtransport",
        ":scheme": "https",
        ":path": `${url.pathname}${url.search}`,
        ":authority": url.host,
      });
      req.once("response", (h) => done(Number(h[":status"]) === 200 ? undefined : Number(h[":status"])));
      req.once("error", () => done(undefined));
      req.end();
    });
  });
}
