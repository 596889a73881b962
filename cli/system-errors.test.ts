/**
 * What the operating system refuses (a busy port, a directory given as a
 * model file) ends a command with one line naming it and exit 1, not a
 * stack trace (found by a stranger's check of the README: `device serve
 * --port` on a busy port and `demo --model DIR` printed Node's traces).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPdd } from "./test/run-pdd.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-syserr-"));
let busy: Server;
let busyPort: number;
beforeAll(async () => {
  busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise<void>((resolve) => busy.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

const pdd = runPdd;

describe("a refusal by the operating system is one line and exit 1", () => {
  it("device serve --port on a busy port", async () => {
    const r = await pdd("device", "serve", "--model", "sim:instant", "--host", "127.0.0.1", "--port", String(busyPort));
    expect(r.stderr).toMatch(/^pdd device serve: [^\n]*EADDRINUSE[^\n]*\n$/);
    expect(r.status).toBe(1);
  });

  it("demo --model a directory", async () => {
    const r = await pdd("demo", "--model", dir);
    expect(r.stderr).toMatch(/^pdd demo: \[invalid_argument\] [^\n]* is not a usable GGUF model: [^\n]*\n$/);
    expect(r.status).toBe(1);
  });
});
