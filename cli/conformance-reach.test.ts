/**
 * `pdd conformance` against a target it cannot reach stops once (issue 16: a
 * down or wrong target gave 164 FAIL rows, each after its own wait): one line
 * on stderr naming the cause, the cause in the JSON and JUnit reports, and
 * exit status 3. A reachable target still runs its cases.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { closedPort as aClosedPort } from "./test/closed-port.js";
import { runPdd } from "./test/run-pdd.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { createSelfSignedCertificate } from "../transports/index.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-conformance-reach-"));
const KEY = "alpha-key-123";
let keyed: CloudPeer;
let tls: CloudPeer;
let closedPort: number;

beforeAll(async () => {
  writeFileSync(join(dir, "keys"), `${KEY}\n`);
  const listen = { ws: "127.0.0.1:0", grpc: "127.0.0.1:0" };
  const engine = () => ({ engine: new SimEngine({ profile: INSTANT }) });
  keyed = await startCloud({ listen, keysFile: join(dir, "keys"), logLevel: "silent" }, engine());
  const { cert, key } = await createSelfSignedCertificate();
  tls = await startCloud({ listen, tls: { cert, key }, logLevel: "silent" }, engine());
  closedPort = await aClosedPort();
});
afterAll(async () => {
  await keyed?.close({ drainSeconds: 0 });
  await tls?.close({ drainSeconds: 0 });
  rmSync(dir, { recursive: true, force: true });
});

const port = (url: string) => new URL(url).port;

/** `pdd conformance --role cloud --target URL ...` with JSON and JUnit reports: its exit status, stderr and reports. */
async function conformance(...args: string[]) {
  const json = join(dir, "report.json");
  const junit = join(dir, "report.xml");
  rmSync(json, { force: true });
  const run = await runPdd("conformance", ...args, "--json", json, "--junit", junit);
  const report = JSON.parse(readFileSync(json, "utf8")) as Record<string, unknown> | unknown[];
  return { ...run, report, junit: readFileSync(junit, "utf8") };
}

describe("pdd conformance --role cloud: a target it cannot reach is said once, with its cause, exit 3", () => {
  it.each([
    ["a refused port", () => `ws://127.0.0.1:${closedPort}/pdd`, [], "refused"],
    ["a refused port (gRPC)", () => `grpc://127.0.0.1:${closedPort}`, [], "refused"],
    [
      "a ws:// URL at the gRPC port",
      () => `ws://127.0.0.1:${port(keyed.urls.grpc!)}/pdd`,
      ["--token", KEY],
      "protocol",
    ],
    [
      "a grpc:// URL at the WebSocket port",
      () => `grpc://127.0.0.1:${port(keyed.urls.ws!)}`,
      ["--token", KEY],
      "protocol",
    ],
    ["a wss:// URL at a port without TLS", () => keyed.urls.ws!.replace("ws:", "wss:"), ["--token", KEY], "protocol"],
    ["an untrusted certificate (wss://)", () => tls.urls.ws!.replace("ws:", "wss:"), [], "tls"],
    ["an untrusted certificate (grpcs://)", () => tls.urls.grpc!.replace("grpc:", "grpcs:"), [], "tls"],
    ["a wrong key (WebSocket: HTTP 401)", () => keyed.urls.ws!, ["--token", "wrong"], "auth"],
    ["a wrong key (gRPC: UNAUTHENTICATED)", () => keyed.urls.grpc!, ["--token", "wrong"], "auth"],
    ["no key where one is needed (an Error to the Hello)", () => keyed.urls.ws!, [], "auth"],
    ["a wrong path", () => keyed.urls.ws!.replace("/pdd", "/nope"), ["--token", KEY], "not-found"],
  ] as const)("%s", async (_, target, more, cause) => {
    const r = await conformance("--role", "cloud", "--target", target(), ...more);
    expect(r.status).toBe(3);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringContaining(`cannot reach the target: ${cause}: `)]);
    expect(r.stdout).toBe(""); // no table of FAIL rows
    expect(r.report).toMatchObject({ target: target(), reached: false, cause, results: [] });
    expect(r.junit).toContain('errors="1"');
  });

  it("a refused gRPC port is said as no connection, in the words of the refusal, without grpc-js's empty note", async () => {
    const r = await conformance("--role", "cloud", "--target", `grpc://127.0.0.1:${closedPort}`);
    expect(r.stderr.trim()).toMatch(
      /cannot reach the target: refused: .*no connection \(gRPC status UNAVAILABLE\): .*ECONNREFUSED/,
    );
    expect(r.stderr).not.toMatch(/Resolution note|closed the connection before any frame/);
  });

  it("a target it reaches runs its cases as before", async () => {
    const r = await conformance(
      "--role",
      "cloud",
      "--target",
      keyed.urls.grpc!,
      "--token",
      KEY,
      "--case",
      "cloud.ping",
    );
    expect(r.status).toBe(0);
    expect(Array.isArray(r.report) && r.report.length > 0).toBe(true);
  });
});

describe("pdd conformance --role device: a device that never connects stops the run once", () => {
  it("names the device's exit and its last words, exit 3", async () => {
    const r = await conformance(
      "--role",
      "device",
      "--listen",
      "ws://127.0.0.1:0",
      "--exec",
      "echo no cloud here >&2; exit 7",
    );
    expect(r.status).toBe(3);
    expect(r.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(
        /cannot reach the target: exited: the device never connected: it exited with 7 .*no cloud here/,
      ),
    ]);
    expect(r.report).toMatchObject({ reached: false, cause: "exited", results: [] });
  });
});
