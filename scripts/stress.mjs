#!/usr/bin/env node
/**
 * Runs the test suite with busy CPU hogs beside it, as on a shared machine:
 * a test that waits on time instead of on an event fails here first.
 *
 *   npm run test:stress                       the whole suite once, two hogs
 *   npm run test:stress -- --repeat 3         three runs in a row, stopping at the first failure
 *   npm run test:stress -- --hogs 4 -- reference-cloud/keys.test.ts   vitest arguments after "--"
 *
 * Exits with the status of the first failed run (0 when every run passed).
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function parseArgs(argv) {
  const o = { repeat: 1, hogs: 2, vitest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      o.vitest = argv.slice(i + 1);
      break;
    }
    const value = Number(argv[i + 1]);
    if ((a === "--repeat" || a === "--hogs") && Number.isInteger(value) && value >= (a === "--hogs" ? 0 : 1)) {
      o[a.slice(2)] = value;
      i++;
    } else {
      console.error(
        `stress: unknown or invalid argument "${a}"\nusage: stress.mjs [--repeat N] [--hogs N] [-- vitest args]`,
      );
      process.exit(2);
    }
  }
  return o;
}

/** A child process that keeps one core busy until it is killed. */
function startHog() {
  return spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
}

/** One vitest run; resolves with its exit status and its summary lines. */
function runSuite(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, "node_modules", "vitest", "vitest.mjs"), "run", ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let tail = "";
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      tail = (tail + chunk.toString()).slice(-4000);
    });
    child.on("close", (code, signal) => {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes
      const plain = tail.replace(/\u001b\[[0-9;]*m/g, "");
      const summary = plain.split("\n").filter((l) => /^\s*(Test Files|Tests|Duration)\s/.test(l));
      resolve({ status: code ?? (signal ? 1 : 0), summary: summary.map((l) => l.trim()) });
    });
  });
}

const opts = parseArgs(process.argv.slice(2));
const hogs = Array.from({ length: opts.hogs }, startHog);
const stopHogs = () => {
  for (const h of hogs) h.kill("SIGKILL");
};
for (const sig of ["SIGINT", "SIGTERM"])
  process.on(sig, () => {
    stopHogs();
    process.exit(130);
  });

let status = 0;
const lines = [];
try {
  for (let run = 1; run <= opts.repeat && status === 0; run++) {
    const t0 = performance.now();
    const r = await runSuite(opts.vitest);
    status = r.status;
    const wall = ((performance.now() - t0) / 1000).toFixed(0);
    lines.push(
      `stress run ${run}/${opts.repeat} (${opts.hogs} hogs): ${status === 0 ? "green" : `FAILED (exit ${status})`}, ${wall} s`,
    );
    for (const l of r.summary) lines.push(`  ${l}`);
  }
} finally {
  stopHogs();
}
console.log(`\n${lines.join("\n")}`);
process.exit(status);
