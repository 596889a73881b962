#!/usr/bin/env node
/**
 * `npm test`: the type check, the suite (vitest) and the hostile suite's quick
 * cases (`npm run test:hostile:quick`), all three at once. Run one after
 * another they took 14 s + 111 s + 40 s on 2 idle cores; the hostile cases
 * and the suite both spend most of their time waiting on sockets, timers and
 * child processes, so together they take little longer than the suite alone.
 *
 * The suite's output streams as it runs; the type check's and the hostile
 * cases' are held and printed when the suite is done, then one line per step.
 * Exits 1 when any step failed. Arguments go to the suite's `vitest run`.
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (...p) => join(root, "node_modules", ...p);

/** One step as a child process; resolves with its status, how long it took and (unless `live`) its output. */
function step(name, command, args, live) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: root,
      stdio: ["ignore", live ? "inherit" : "pipe", live ? "inherit" : "pipe"],
    });
    const out = [];
    child.stdout?.on("data", (b) => out.push(b));
    child.stderr?.on("data", (b) => out.push(b));
    child.on("error", (e) => out.push(Buffer.from(`${name}: ${e.message}\n`)));
    child.on("close", (code, signal) =>
      resolve({
        name,
        status: code ?? (signal ? 1 : 0),
        seconds: (performance.now() - t0) / 1000,
        output: Buffer.concat(out),
      }),
    );
  });
}

const steps = await Promise.all([
  step("type check (tsc)", process.execPath, [bin("typescript", "bin", "tsc"), "-p", "tsconfig.json", "--noEmit"]),
  step("suite (vitest run)", process.execPath, [bin("vitest", "vitest.mjs"), "run", ...process.argv.slice(2)], true),
  step("hostile quick cases (npm run test:hostile:quick)", "npm", ["run", "--silent", "test:hostile:quick"]),
]);
for (const s of steps) {
  if (s.output.length === 0) continue;
  process.stdout.write(`\n── ${s.name} ──\n`);
  process.stdout.write(s.output);
}
process.stdout.write("\n");
for (const s of steps)
  process.stdout.write(
    `npm test: ${s.name} ${s.status === 0 ? "passed" : `FAILED (${s.status})`} in ${s.seconds.toFixed(0)} s\n`,
  );
process.exit(steps.some((s) => s.status !== 0) ? 1 : 0);
