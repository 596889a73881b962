/**
 * Self-signed certificates for local use. They follow WebTransport's rules
 * for `serverCertificateHashes` (ECDSA P-256, valid at most 14 days), so the
 * same certificate serves wss://, grpcs:// and https:// (WebTransport).
 */
// @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill loaded first.
import "reflect-metadata";
import { createHash, webcrypto, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto);

export interface SelfSignedCertificate {
  /** PEM certificate; also what a client trusts as its CA. */
  cert: string;
  /** PEM PKCS#8 private key. */
  key: string;
  /** SHA-256 of the DER certificate, for WebTransport serverCertificateHashes. */
  sha256: Uint8Array;
  notAfter: Date;
}

export interface CertificateOptions {
  /** DNS names and IP addresses; default localhost, 127.0.0.1, ::1. */
  hosts?: string[];
  /** Validity in days, at most 14 (WebTransport's limit). Default 13. */
  days?: number;
}

export async function createSelfSignedCertificate(options: CertificateOptions = {}): Promise<SelfSignedCertificate> {
  const days = options.days ?? 13;
  if (days <= 0 || days > 14)
    throw new RangeError("WebTransport accepts certificate hashes only for certificates valid 14 days or less");
  const hosts = options.hosts ?? ["localhost", "127.0.0.1", "::1"];
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + days * 86_400_000);
  const ip = /^[\d.]+$|:/;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 16),
    name: `CN=${hosts[0] ?? "localhost"}`,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        hosts.map((h) => (ip.test(h) ? { type: "ip" as const, value: h } : { type: "dns" as const, value: h })),
      ),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  const key = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(pkcs8)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .trim()}\n-----END PRIVATE KEY-----\n`;
  const pem = cert.toString("pem");
  return { cert: pem, key, sha256: certificateSha256(pem), notAfter };
}

/** SHA-256 of a PEM certificate's DER bytes. */
export function certificateSha256(pem: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(new X509Certificate(pem).raw).digest());
}
