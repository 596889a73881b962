/**
 * `pdd device` given each wrong input a user makes (issue 16): a mistake in
 * the command line is a usage error (exit 2); a cloud that cannot serve is
 * named by its cause on stderr (text) and in the report's fallbackReason
 * (JSON), and the device answers alone (exit 0) unless --no-fallback (exit 1).
 * And WebTransport works from the command line with the cloud's default,
 * generated certificate (--cert-sha256, or --ca with the file the cloud
 * wrote), with a CA-signed certificate and with a long-lived self-signed one,
 * as wss:// and grpcs:// do.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { closedPort as aClosedPort } from "./test/closed-port.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { startCloud, type CloudConfigInput, type CloudPeer } from "../reference-cloud/index.js";
import { certificateSha256, createSelfSignedCertificate } from "../transports/index.js";
import { caSignedLeaf, longSelfSigned } from "../transports/test/ca.js";
import { runPdd } from "./test/run-pdd.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-device-cli-"));
const file = (name: string, text: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const ALL = { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" };
const start = (c: CloudConfigInput = {}) =>
  startCloud({ model: ensureDefaultModel("tiny"), threads: 1, logLevel: "silent", listen: ALL, ...c });

/** A cloud without TLS or keys (WebTransport on its generated certificate), one with both. */
let plain: CloudPeer;
let secure: CloudPeer;
let secureCa: string;
let closedPort: number;

beforeAll(async () => {
  plain = await start();
  const { cert, key } = await createSelfSignedCertificate();
  secure = await start({ keysFile: file("keys", "alpha\n"), tls: { cert, key } });
  secureCa = file("secure.pem", secure.certificate.cert);
  closedPort = await aClosedPort();
});
afterAll(async () => {
  await plain?.close({ drainSeconds: 0 });
  await secure?.close({ drainSeconds: 0 });
  rmSync(dir, { recursive: true, force: true });
});

const pdd = runPdd;

const ask = ["--prompt", "The quick brown fox.", "--max-tokens", "4"];
/** `pdd device --json` against `url`; the report and the exit status. */
async function device(url: string, ...more: string[]) {
  const r = await pdd("device", "--cloud", url, ...ask, "--json", ...more);
  const line = r.stdout.trim().split("\n").pop() ?? "";
  const report = line.startsWith("{") ? (JSON.parse(line) as Record<string, unknown>) : undefined;
  return { ...r, report };
}
const path = (url: string, p: string) => url.replace(/\/[^/]*$/, p);
const port = (url: string) => new URL(url).port;

describe("pdd device: a mistake on the command line is a usage error (exit 2), never a silent local run", () => {
  it.each([
    ["a scheme no binding has", ["--cloud", "http://127.0.0.1:4100/pdd"], /unsupported scheme "http:"/],
    ["a malformed URL", ["--cloud", "ws//127.0.0.1:4100/pdd"], /is not a URL/],
    ["msgpack over gRPC", ["--cloud", "grpc://127.0.0.1:4101", "--codec", "msgpack"], /only proto/],
    ["a short certificate hash", ["--cloud", "https://127.0.0.1:4102/pdd", "--cert-sha256", "abcd"], /64 hex digits/],
    [
      "a certificate hash for a ws:// URL",
      ["--cloud", "ws://127.0.0.1:4100/pdd", "--cert-sha256", "ab".repeat(32)],
      /needs an https:\/\/ --cloud URL/,
    ],
    ["--no-fallback with --local-only", ["--local-only", "--no-fallback"], /needs a cloud/],
  ])("%s", async (_name, args, message) => {
    const r = await pdd("device", ...ask, ...args);
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });
});

describe("pdd device: a cloud it cannot use is named by its cause, and the device answers alone", () => {
  const cases: [string, () => [string, ...string[]], string][] = [
    ["a wrong path", () => [path(plain.urls.ws!, "/wrong")], "not-found"],
    ["a ws:// URL at the gRPC port", () => [`ws://127.0.0.1:${port(plain.urls.grpc!)}/pdd`], "protocol"],
    ["a grpc:// URL at the WebSocket port", () => [`grpc://127.0.0.1:${port(plain.urls.ws!)}`], "protocol"],
    ["an untrusted certificate (wss://)", () => [secure.urls.ws!, "--token", "alpha"], "tls"],
    ["an untrusted certificate (grpcs://)", () => [secure.urls.grpc!, "--token", "alpha"], "tls"],
    ["an untrusted certificate (https://)", () => [plain.urls.webtransport!], "tls"],
    ["a missing token", () => [secure.urls.ws!, "--ca", secureCa], "auth"],
    ["a wrong token (grpcs://)", () => [secure.urls.grpc!, "--ca", secureCa, "--token", "beta"], "auth"],
    ["a wrong token (https://)", () => [secure.urls.webtransport!, "--ca", secureCa, "--token", "beta"], "auth"],
    ["a cloud that is down", () => [`ws://127.0.0.1:${closedPort}/pdd`], "refused"],
  ];
  it.each(cases)("%s", async (_name, args, cause) => {
    const [url, ...more] = args();
    const r = await device(url, ...more);
    expect(r.report?.mode).toBe("fallback");
    expect(r.report?.fallbackCause).toBe(cause);
    expect(String(r.report?.fallbackReason)).toMatch(new RegExp(`^${cause}: `));
    expect(r.status).toBe(0);
  });

  it("says so on stderr in text mode", async () => {
    const r = await pdd("device", "--cloud", `ws://127.0.0.1:${closedPort}/pdd`, ...ask);
    expect(r.stdout.length).toBeGreaterThan(1);
    expect(r.stderr).toMatch(/^pdd device: answered on the device alone, refused: .*ECONNREFUSED/);
    expect(r.status).toBe(0);
  });

  it("--no-fallback: exit 1 with the cause, and no answer", async () => {
    const r = await pdd("device", "--cloud", path(plain.urls.ws!, "/wrong"), ...ask, "--no-fallback");
    expect(r.stderr).toMatch(/^pdd device: \[unavailable\] cloud not usable, not-found: .*404/);
    expect(r.stdout).toBe("");
    expect(r.status).toBe(1);
  });

  it.each([
    ["a file that is not GGUF", () => file("model.gguf", "not a model")],
    ["a truncated GGUF", () => file("cut.gguf", readFileSync(ensureDefaultModel("tiny")).subarray(0, 200_000))],
    ["a directory", () => dir],
  ])("--model %s: exit 1, one line naming it", async (_name, model) => {
    const r = await pdd("device", "--local-only", ...ask, "--model", model());
    expect(r.stderr).toMatch(/^pdd device: \[invalid_argument\] [^\n]* is not a usable GGUF model: [^\n]*\n$/);
    expect(r.status).toBe(1);
  });
});

describe("pdd device over WebTransport, trusted as the other bindings are", () => {
  it("the cloud's generated certificate, pinned with --cert-sha256", async () => {
    const hash = Buffer.from(certificateSha256(plain.certificate.cert)).toString("hex");
    const r = await device(plain.urls.webtransport!, "--cert-sha256", hash);
    expect(r.report?.mode).toBe("pd");
  });

  it("the cloud's generated certificate, from the file, with --ca", async () => {
    const r = await device(plain.urls.webtransport!, "--ca", file("plain.pem", plain.certificate.cert));
    expect(r.report?.mode).toBe("pd");
  });

  it("a wrong pinned hash is a tls failure", async () => {
    const r = await device(plain.urls.webtransport!, "--cert-sha256", "ab".repeat(32));
    expect(r.report?.fallbackCause).toBe("tls");
  });

  for (const [name, make] of [
    ["a CA-signed certificate, --ca the CA", async () => caSignedLeaf()],
    ["a self-signed certificate valid 90 days", async () => ({ ca: undefined, ...(await longSelfSigned()) })],
  ] as const) {
    it(`${name}: P/D on wss://, grpcs:// and https://`, async () => {
      const c = await make();
      const cloud = await start({ tls: { cert: c.cert, key: c.key } });
      try {
        const ca = file("ca.pem", c.ca ?? c.cert);
        for (const url of [cloud.urls.ws!, cloud.urls.grpc!, cloud.urls.webtransport!]) {
          const r = await device(url, "--ca", ca);
          expect({ url, mode: r.report?.mode, why: r.report?.fallbackReason }).toEqual({
            url,
            mode: "pd",
            why: undefined,
          });
        }
      } finally {
        await cloud.close({ drainSeconds: 0 });
      }
    });
  }
});

describe("pdd cloud's WebTransport certificate, where a device finds it", () => {
  it("pdd cloud writes its generated certificate and prints its path and hash; pdd device answers in P/D with either", async () => {
    const out = join(dir, "cloud-cert.pem");
    const bin = join(import.meta.dirname, "..", "bin", "pdd.js");
    const child = spawn(
      process.execPath,
      [
        bin,
        "cloud",
        "--ws",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
        "--webtransport",
        "127.0.0.1:0",
        "--cert-out",
        out,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      const first = await new Promise<string>((resolve, reject) => {
        let text = "";
        child.stdout.on("data", (b: Buffer) => {
          text += b.toString();
          if (text.includes("\n")) resolve(text.split("\n")[0]!);
        });
        child.once("exit", (code) => reject(new Error(`pdd cloud exited ${code}`)));
      });
      const line = JSON.parse(first) as {
        listening: { webtransport: string };
        webtransportCert: string;
        webtransportCertSha256: string;
      };
      expect(line.webtransportCert).toBe(out);
      expect(Buffer.from(certificateSha256(readFileSync(out, "utf8"))).toString("hex")).toBe(
        line.webtransportCertSha256,
      );
      const byFile = await device(line.listening.webtransport, "--ca", out);
      expect(byFile.report?.mode).toBe("pd");
      const byHash = await device(line.listening.webtransport, "--cert-sha256", line.webtransportCertSha256);
      expect(byHash.report?.mode).toBe("pd");
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
    }
  });

  it("pdd cloud with no binding left is a usage error", async () => {
    const r = await pdd("cloud", "--no-ws", "--no-grpc", "--no-webtransport");
    expect(r.stderr).toMatch(/nothing to listen on/);
    expect(r.status).toBe(2);
  });
});
