/**
 * `pdd cloud` as an operator signals it: SIGHUP re-reads the keys file and
 * says so once per signal (issue 16: "keys reloaded" was logged twice),
 * SIGTERM stops it with exit status 0.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

describe("pdd cloud and its signals", () => {
  it("logs one 'keys reloaded' per SIGHUP with the new count, and exits 0 on SIGTERM", async () => {
    const keys = join(mkdtempSync(join(tmpdir(), "pdd-sighup-")), "keys");
    writeFileSync(keys, "alpha\n");
    const bin = join(import.meta.dirname, "..", "bin", "pdd.js");
    const child = spawn(
      process.execPath,
      [bin, "cloud", "--model", "sim:instant", "--keys", keys, "--ws", "127.0.0.1:0", "--no-grpc", "--no-webtransport"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let stderr = "";
    const ready = new Promise<void>((resolve) =>
      child.stdout.on("data", (b: Buffer) => b.toString().includes('"listening"') && resolve()),
    );
    const waiters: { re: RegExp; n: number; resolve: () => void }[] = [];
    const count = (re: RegExp) => stderr.split("\n").filter((l) => re.test(l)).length;
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      for (const w of waiters) if (count(w.re) >= w.n) w.resolve();
    });
    const logged = (re: RegExp, n: number) =>
      new Promise<void>((resolve, reject) => {
        if (count(re) >= n) return resolve();
        waiters.push({ re, n, resolve });
        void exited.then((code) => reject(new Error(`pdd cloud exited ${code} before ${re}:\n${stderr}`)));
      });
    try {
      await Promise.race([ready, exited.then((code) => Promise.reject(new Error(`exited ${code}: ${stderr}`)))]);
      child.kill("SIGHUP");
      await logged(/"msg":"keys reloaded".*"count":1/, 1);
      writeFileSync(keys, "alpha\nbeta\n");
      child.kill("SIGHUP");
      await logged(/"msg":"keys reloaded".*"count":2/, 1);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(count(/"msg":"keys reloaded"/)).toBe(2);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
