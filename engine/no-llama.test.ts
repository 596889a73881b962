/**
 * node-llama-cpp (a native binding, a second to load) is loaded only when a
 * llama model is: code written against the engine interface, SimEngine, and
 * the peers running on `sim:` models never load it. A child process refuses
 * the module with a resolve hook, imports the entry points and runs a
 * simulated engine; the same hook must then refuse the llama runtime, which
 * shows that the check can fail.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");

/** Entry points that must not load node-llama-cpp when imported. */
const ENTRIES = [
  "engine/inference.ts",
  "engine/sim-engine.ts",
  "engine/index.ts",
  "reference-device/index.ts",
  "reference-cloud/index.ts",
];

const CHILD = `
import { register } from "node:module";
const refuse = 'export async function resolve(s, c, next) {' +
  ' if (s === "node-llama-cpp" || s.startsWith("node-llama-cpp/")) throw new Error("node-llama-cpp imported by " + c.parentURL);' +
  ' return next(s, c); }';
register("data:text/javascript," + encodeURIComponent(refuse));
const root = new URL("file://" + process.cwd() + "/");
for (const entry of ${JSON.stringify(ENTRIES)}) await import(new URL(entry, root).href);
const engine = await import(new URL("engine/index.ts", root).href);
const sim = await engine.loadEngine({ modelPath: "sim:instant" });
console.log(JSON.stringify({ simModel: sim.info.name }));
await engine.llamaRuntime().then(
  () => console.log(JSON.stringify({ llama: "loaded" })),
  (e) => console.log(JSON.stringify({ llama: e.message })),
);
`;

describe("node-llama-cpp loads lazily", () => {
  it("importing the engine interface, SimEngine and the peers, and running a sim: model, never loads node-llama-cpp", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", CHILD], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const [sim, llama] = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(sim).toEqual({ simModel: "sim instant" });
    // The hook is live: the first real need for llama.cpp hits it.
    expect(llama.llama).toMatch(/node-llama-cpp imported by .*engine\/engine\.ts/);
  });
});
