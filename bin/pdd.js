#!/usr/bin/env node
// Launcher for the `pdd` CLI: runs the compiled build (npm ci builds it
// through the `prepare` script) unless a TypeScript source is newer than it —
// in a working copy being edited — and then the sources, through tsx.
import { existsSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "dist", "cli", "pdd.js");

function newestSource(dir, depth = 0) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith(".") || e.name === "node_modules" || e.name === "dist") continue;
    const p = join(dir, e.name);
    if (e.isDirectory() && depth < 4) newest = Math.max(newest, newestSource(p, depth + 1));
    else if (e.isFile() && e.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

if (existsSync(dist) && statSync(dist).mtimeMs >= newestSource(root)) {
  await import(new URL("../dist/cli/pdd.js", import.meta.url).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../cli/pdd.ts", import.meta.url).href);
}
