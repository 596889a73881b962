import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadCloudConfigFile, parseCloudConfig } from "./config.js";

describe("cloud config", () => {
  it("fills every limit with its spec default", () => {
    const c = parseCloudConfig({});
    expect(c.limits).toEqual({
      maxFrameBytes: 4 << 20,
      maxConcurrentRequests: 8,
      maxCloudTokenBudget: 256,
      maxKvChunkBytes: 1 << 20,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
      maxRequestDurationMs: 600_000,
    });
    expect(c.sequences).toBe(4);
  });

  it.each([
    [{ listen: { ws: "nohost" } }, /listen.ws: expected HOST:PORT/],
    [{ sequences: 0 }, /sequences/],
    [{ limits: { maxFrameBytes: 10 } }, /limits.maxFrameBytes/],
    [{ bogus: true }, /Unrecognized key|unrecognized/i],
  ])("rejects %j with the offending path", (input, message) => {
    expect(() => parseCloudConfig(input)).toThrow(message);
  });

  it("reads tls.cert and tls.key from files named relative to the config file, or takes PEM text as is", () => {
    const dir = mkdtempSync(join(tmpdir(), "pdd-config-"));
    const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    writeFileSync(join(dir, "cert.pem"), cert);
    writeFileSync(join(dir, "key.pem"), "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    writeFileSync(join(dir, "paths.json"), JSON.stringify({ tls: { cert: "cert.pem", key: join(dir, "key.pem") } }));
    expect(loadCloudConfigFile(join(dir, "paths.json")).tls).toEqual({
      cert,
      key: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    });
    writeFileSync(join(dir, "text.json"), JSON.stringify({ tls: { cert, key: "-----BEGIN PRIVATE KEY-----\nx" } }));
    expect(loadCloudConfigFile(join(dir, "text.json")).tls?.cert).toBe(cert);
    writeFileSync(join(dir, "missing.json"), JSON.stringify({ tls: { cert: "nope.pem", key: "key.pem" } }));
    expect(() => loadCloudConfigFile(join(dir, "missing.json"))).toThrow(/tls\.cert: cannot read .*nope\.pem/);
  });
});
