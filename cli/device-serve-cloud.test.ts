/**
 * `pdd device serve` with a cloud it cannot use says so at startup (issue
 * 16: it used to say nothing until a request's log line): one line for a
 * person and one JSON log line on stderr naming the cause, and `cloudError`
 * in its ready line; it then serves on the device alone. With --no-fallback
 * it does not start (exit 1, the cause named). A reachable cloud gets no
 * warning.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { closedPort as aClosedPort } from "./test/closed-port.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";

const bin = join(import.meta.dirname, "../bin/pdd.js");
const dir = mkdtempSync(join(tmpdir(), "pdd-serve-cloud-"));
let open: CloudPeer;
let keyed: CloudPeer;
let closedPort: number;

beforeAll(async () => {
  writeFileSync(join(dir, "keys"), "alpha-key-123\n");
  const listen = { ws: "127.0.0.1:0" };
  open = await startCloud({ listen, logLevel: "silent" }, { engine: new SimEngine({ profile: INSTANT }) });
  keyed = await startCloud(
    { listen, keysFile: join(dir, "keys"), logLevel: "silent" },
    { engine: new SimEngine({ profile: INSTANT }) },
  );
  closedPort = await aClosedPort();
});
afterAll(async () => {
  await open?.close({ drainSeconds: 0 });
  await keyed?.close({ drainSeconds: 0 });
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `pdd device serve --port 0 ...` until its ready line (then SIGTERM) or its exit: all it printed, and its status. */
async function serve(
  ...args: string[]
): Promise<{ status: number | null; ready?: Record<string, unknown>; stderr: string }> {
  const child = spawn(process.execPath, [bin, "device", "serve", "--port", "0", "--threads", "1", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  child.stdout.on("data", (b: Buffer) => {
    stdout += b.toString();
    if (stdout.includes("\n")) child.kill("SIGTERM");
  });
  const status = await new Promise<number | null>((resolve) => child.once("close", resolve));
  const line = stdout.split("\n")[0];
  return { status, ready: line ? (JSON.parse(line) as Record<string, unknown>) : undefined, stderr };
}

describe("pdd device serve: the cloud at startup", () => {
  it.each([
    ["down (a refused port)", () => [`ws://127.0.0.1:${closedPort}/pdd`], "refused"],
    ["refusing the credential", () => [keyed.urls.ws!, "--token", "wrong"], "auth"],
  ])("%s: one warning line and one JSON log line naming the cause, then serves alone", async (_, cloud, cause) => {
    const r = await serve("--cloud", ...cloud());
    expect(r.status).toBe(0);
    expect(r.ready).toMatchObject({ cloudError: { cause, message: expect.stringContaining(`${cause}: `) } });
    const lines = r.stderr.trim().split("\n");
    const warning = lines.filter((l) => l.startsWith("pdd device serve: cannot use the cloud"));
    expect(warning).toEqual([expect.stringContaining(`${cause}: `)]);
    expect(warning[0]).toContain("answered on the device alone until it is usable");
    const logged = lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toEqual([expect.objectContaining({ level: "warn", msg: "cloud unreachable", cause })]);
  });

  it("reachable: no warning, and cloudError null", async () => {
    const r = await serve("--cloud", open.urls.ws!);
    expect(r.status).toBe(0);
    expect(r.ready).toMatchObject({ cloud: open.urls.ws, cloudError: null });
    expect(r.stderr).not.toContain("cloud");
  });

  it("--no-fallback and the cloud down: does not start, exit 1, the cause named", async () => {
    const r = await serve("--cloud", `ws://127.0.0.1:${closedPort}/pdd`, "--no-fallback");
    expect(r.status).toBe(1);
    expect(r.ready).toBeUndefined();
    expect(r.stderr).toMatch(/pdd device serve: .*cannot use the cloud, refused: .*not starting \(--no-fallback\)/);
  });
});
