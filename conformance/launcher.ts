/**
 * `--exec`: starts the device under test as a shell command, once per run.
 * The command gets the suite's URL and trust material through placeholders
 * and environment variables, and must print the answer it displays on
 * stdout (one trailing newline is ignored) and exit 0 when it finished.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceOutcome } from "./case.js";
import type { DeviceLauncher } from "./runner.js";

/** Placeholders: {url}, {codec}, {ca} (a PEM file, WebTransport), {cert_sha256} (hex). */
export function execLauncher(command: string): DeviceLauncher {
  let caFile: string | undefined;
  return {
    start(o) {
      if (o.caPem && !caFile) {
        caFile = join(mkdtempSync(join(tmpdir(), "pdd-conformance-")), "ca.pem");
        writeFileSync(caFile, o.caPem);
      }
      const vars: Record<string, string> = {
        url: o.url,
        codec: o.codec,
        ca: caFile ?? "",
        cert_sha256: o.certSha256 ?? "",
      };
      const line = command.replace(/\{(url|codec|ca|cert_sha256)\}/g, (_m, k: string) => vars[k]!);
      const child = spawn(line, {
        shell: true,
        detached: true, // its own process group, so stop() reaches the whole tree
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          PDD_CONFORMANCE_URL: o.url,
          PDD_CONFORMANCE_CODEC: o.codec,
          PDD_CONFORMANCE_CA: caFile ?? "",
          PDD_CONFORMANCE_CERT_SHA256: o.certSha256 ?? "",
        },
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      const outcome = new Promise<DeviceOutcome>((resolve) => {
        child.once("error", (e) => resolve({ exitCode: 127, text: "", stderr: e.message }));
        child.once("close", (code, signal) => {
          const text = Buffer.concat(out).toString("utf8");
          resolve({
            exitCode: code ?? (signal ? 128 : 1),
            text: text.endsWith("\n") ? text.slice(0, -1) : text,
            stderr: Buffer.concat(err).toString("utf8"),
          });
        });
      });
      return {
        outcome,
        stop() {
          if (child.exitCode === null && child.pid) {
            try {
              process.kill(-child.pid, "SIGKILL");
            } catch {
              // already gone
            }
          }
        },
      };
    },
  };
}
