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
    return cert.checkIssued(cert) && days <= 14 ? certificateSha256(ca) : undefined;
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
    // http2.connect calls tls.connect(port, host, options).
    if (typeof a === "number" && typeof b === "string" && c && typeof c === "object") {
      const options = c as tls.ConnectionOptions;
      const ca = cas.get(`${b.replace(/^\[(.*)\]$/, "$1")}:${a}`);
      if (ca && options.ca === undefined) return original(a, b, { ...options, ca });
    }
    return (original as (...x: unknown[]) => tls.TLSSocket)(...args);
  };
  tls.connect = patched as Connect;
}
