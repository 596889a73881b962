/**
 * PDD-TOK-002 against a cloud whose vocabulary lacks a byte token (preset
 * tiny-nobyte): the reference cloud refuses the text with INVALID_ARGUMENT;
 * the same cloud without the engine's check hands the text to llama.cpp,
 * which aborts the process, and the case fails. Both clouds run in child
 * processes, so a missing check kills a child, never the test runner.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { runConformance } from "./runner.js";
import { problems } from "./test/reference-cloud.js";

const NOBYTE = ensureDefaultModel("tiny-nobyte");
const CASE = "cloud.text.untokenizable";

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill();
});

async function spawnCloud(...flags: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const script = fileURLToPath(new URL("./test/tok-cloud.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", script, NOBYTE, ...flags], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const url = await new Promise<string>((res, rej) => {
    createInterface({ input: child.stdout! }).once("line", res);
    child.once("exit", (code) => rej(new Error(`the cloud exited with ${code}: ${stderr}`)));
  });
  return { child, url, stderr: () => stderr };
}

describe("a cloud that cannot tokenize a text (PDD-TOK-002)", () => {
  it("the reference cloud refuses it with INVALID_ARGUMENT and serves on, on both codecs", async () => {
    const { url } = await spawnCloud();
    const results = await runConformance({ role: "cloud", target: url, modelFile: NOBYTE, filter: CASE });
    expect(results.map((r) => [r.id, r.codec])).toEqual([
      [CASE, "proto"],
      [CASE, "msgpack"],
    ]);
    expect(problems(results, [])).toEqual([]);
    // The case is not offered where every byte has a token: the suite looks for a character first.
    const tiny = await runConformance({
      role: "cloud",
      target: url,
      codecs: ["proto"],
      modelFile: ensureDefaultModel("tiny"),
      filter: CASE,
    });
    expect(tiny.map((r) => r.status)).toEqual(["not-offered"]);
  });

  it("a cloud that hands the text to llama.cpp dies (SIGABRT) and fails the case", async () => {
    const { child, url, stderr } = await spawnCloud("--without-check");
    const exited = once(child, "exit");
    const results = await runConformance({
      role: "cloud",
      target: url,
      codecs: ["proto"],
      modelFile: NOBYTE,
      filter: CASE,
    });
    expect(results.map((r) => r.status)).toEqual(["fail"]);
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: null, signal: "SIGABRT" });
    expect(stderr()).toContain("std::out_of_range");
  });
});
