/**
 * Test certificates that are not WebTransport's pinnable kind: a CA and a
 * leaf it signs (valid a year), and a self-signed leaf valid longer than 14
 * days. Real deployments use these; `ca` must trust them on every binding.
 */
import "reflect-metadata";
import { createHash, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as never);

const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const HOSTS = ["localhost", "127.0.0.1", "::1"];

const serial = () => createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 16);

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  const b64 = der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .trim();
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

const leafExtensions = () => [
  new x509.BasicConstraintsExtension(false, undefined, true),
  new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
  new x509.SubjectAlternativeNameExtension(
    HOSTS.map((h) => (/^[\d.]+$|:/.test(h) ? { type: "ip" as const, value: h } : { type: "dns" as const, value: h })),
  ),
];

const window = (days: number) => {
  const notBefore = new Date(Date.now() - 60_000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
};

/** A CA (its PEM is what a device trusts) and a server leaf it signed, valid `days`. */
export async function caSignedLeaf(days = 365): Promise<{ ca: string; cert: string; key: string }> {
  const caKeys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=pdd test CA",
    ...window(days + 1),
    keys: caKeys as never,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const leafKeys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: "CN=localhost",
    issuer: ca.subject,
    ...window(days),
    publicKey: leafKeys.publicKey as never,
    signingKey: caKeys.privateKey as never,
    signingAlgorithm: alg,
    extensions: leafExtensions(),
  });
  return { ca: ca.toString("pem"), cert: leaf.toString("pem"), key: await pkcs8Pem(leafKeys.privateKey) };
}

/** A self-signed server certificate valid `days` (over 14: WebTransport cannot pin it by hash). */
export async function longSelfSigned(days = 90): Promise<{ cert: string; key: string }> {
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=localhost",
    ...window(days),
    keys: keys as never,
    signingAlgorithm: alg,
    extensions: leafExtensions(),
  });
  return { cert: cert.toString("pem"), key: await pkcs8Pem(keys.privateKey) };
}
