/**
 * The reference device as the peer under attack: `pdd device --json` (one
 * answer, then exit) and `pdd device serve` (the OpenAI API), each in a child
 * process whose exit status, output and memory are its own.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDefaultModel } from "../../engine/index.js";
import { ownChild, PDD_BIN } from "./cloud-process.js";
import { sampleRss } from "./proc.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-hostile-device-"));

/** Writes text to a file of its own (prompts, CA certificates) and returns its path. */
export function fileWith(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

export interface DeviceRun {
  code: number | null;
  /** ms until the --json report was printed (the answer was complete); undefined when it never was. */
  reportMs?: number;
  signal: NodeJS.Signals | null;
  /** Killed by the test at its deadline: the device hung. */
  hung: boolean;
  ms: number;
  peakRss: number;
  stdout: string;
  stderr: string;
  /** The --json report, when the device printed one. */
  report?: {
    text: string;
    mode: string;
    kvImported: boolean;
    fallbackReason?: string;
    fallbackCause?: string;
    cloudTokens: number;
    cloudModel?: string | null;
  };
}

export interface DeviceArgs {
  cloud: string;
  prompt: string;
  maxTokens: number;
  budget?: number;
  codec?: "proto" | "msgpack";
  caPem?: string;
  noKv?: boolean;
  /** GGUF path; default: the embedded tiny model. */
  model?: string;
}

/** `pdd device --json`, killed after `deadlineMs`; `onRss` sees its peak RSS while it runs. */
export async function runDevice(a: DeviceArgs, deadlineMs: number): Promise<DeviceRun> {
  const args = [
    PDD_BIN,
    "device",
    "--cloud",
    a.cloud,
    "--model",
    a.model ?? ensureDefaultModel("tiny"),
    "--threads",
    "1",
  ];
  args.push("--prompt-file", fileWith(`prompt-${a.prompt.length}.txt`, a.prompt), "--max-tokens", String(a.maxTokens));
  args.push("--json", "--tpot-ms", "0");
  if (a.budget) args.push("--budget", String(a.budget));
  if (a.codec) args.push("--codec", a.codec);
  if (a.caPem) args.push("--ca", fileWith("ca.pem", a.caPem));
  if (a.noKv) args.push("--no-kv");
  const t0 = performance.now();
  const child = ownChild(spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] }));
  const rss = sampleRss(child.pid!, 25, true);
  let stdout = "";
  let stderr = "";
  let reportMs: number | undefined;
  child.stdout!.on("data", (b: Buffer) => {
    stdout += b.toString();
    if (reportMs === undefined && stdout.includes("}\n")) reportMs = performance.now() - t0;
  });
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, deadlineMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
    child.once("exit", (c, s) => r([c, s])),
  );
  clearTimeout(timer);
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  return {
    code,
    reportMs,
    signal,
    hung,
    ms: performance.now() - t0,
    peakRss: rss.stop(),
    stdout,
    stderr,
    report: line ? JSON.parse(line) : undefined,
  };
}

export interface Serve {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** `pdd device serve` on a free port; with no cloud URL, it has none (local generation only). */
export async function startServe(cloud: string | undefined, extra: string[] = [], model?: string): Promise<Serve> {
  const args = [PDD_BIN, "device", "serve", ...(cloud ? ["--cloud", cloud] : [])];
  args.push("--model", model ?? ensureDefaultModel("tiny"));
  args.push("--threads", "1", "--port", "0", ...extra);
  const child = ownChild(spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] }));
  let err = "";
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      const line = out.split("\n").find((l) => l.includes('"openai"'));
      if (line) resolve(JSON.parse(line).openai as string);
    });
    child.once("exit", (c) => reject(new Error(`pdd device serve exited (${c}): ${err.slice(-300)}`)));
  });
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

/** The line of a failed run's stderr that says what failed (not the trailing "Node.js vX" of a crash). */
export function firstError(stderr: string): string | undefined {
  const lines = stderr.split("\n").map((l) => l.trim());
  return (
    lines.find((l) => /error|failed|abort/i.test(l) && !l.startsWith("at ")) ?? lines.filter(Boolean).pop()
  )?.slice(0, 200);
}
