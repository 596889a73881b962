#!/usr/bin/env node
// Launcher for the `pdd` CLI: runs the compiled build when present (npm ci
// builds it through the `prepare` script), the TypeScript sources otherwise.
import { existsSync } from "node:fs";

const dist = new URL("../dist/pdd.js", import.meta.url);
if (existsSync(dist)) {
  await import(dist.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../pdd.ts", import.meta.url).href);
}
