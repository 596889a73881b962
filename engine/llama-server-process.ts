/**
 * Starts a llama-server process on a GGUF, on a free port of its own choice
 * (`--port 0`; the port is read from its "listening on" line), for tests and
 * benchmarks. Production runs start llama-server themselves
 * (docs/llama-server.md).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { ErrorCode, PddError } from "../proto/index.js";

export interface LlamaServerProcessOptions {
  binary: string;
  model: string;
  /** `--parallel`: slots; default 2. */
  slots?: number;
  /** `--ctx-size`: positions across every slot; default 4096 × slots. */
  contextSize?: number;
  /** `--threads`; default 1. */
  threads?: number;
  /** `--slot-save-path`, for KV by slot save. */
  slotSavePath?: string;
  /** More arguments, as given. */
  extra?: string[];
}

export interface LlamaServerProcess {
  url: string;
  child: ChildProcess;
  /** Everything it printed so far. */
  log(): string;
  /** SIGKILL, as a crash: no goodbye to its clients. */
  kill(): Promise<void>;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

export function llamaServerArgs(o: LlamaServerProcessOptions): string[] {
  const slots = o.slots ?? 2;
  return [
    ["--model", o.model],
    ["--host", "127.0.0.1", "--port", "0"],
    ["--parallel", String(slots), "--ctx-size", String(o.contextSize ?? 4096 * slots)],
    ["--threads", String(o.threads ?? 1), "--threads-batch", String(o.threads ?? 1)],
    // An HTTP thread serves one connection while it is kept alive: room for every slot's stream, the
    // recoveries, a KV save and the health checks of a few cloud peers.
    ["--threads-http", String(Math.max(8, 4 * slots))],
    ["--metrics", "--slots", "--no-webui"],
    // node-llama-cpp 3.21.1's default ("auto", which llama.cpp resolves the same way in both): the same attention
    // path, so greedy tokens agree, and the same V layout in a slot image (flash attention stores V untransposed,
    // without it transposed; llama.cpp refuses an image of the other layout: "incompatible V transposition").
    ["--flash-attn", "auto"],
    o.slotSavePath ? ["--slot-save-path", o.slotSavePath.endsWith("/") ? o.slotSavePath : `${o.slotSavePath}/`] : [],
    o.extra ?? [],
  ].flat();
}

export async function startLlamaServer(o: LlamaServerProcessOptions): Promise<LlamaServerProcess> {
  const child = spawn(o.binary, llamaServerArgs(o), { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const take = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const m = /listening on (http:\/\/\S+)\s/.exec(output);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    child.once("error", (e) => reject(new PddError(ErrorCode.UNAVAILABLE, `cannot run ${o.binary}: ${e.message}`)));
    void exited.then(() =>
      reject(
        new PddError(
          ErrorCode.UNAVAILABLE,
          `llama-server exited before listening:\n${output.split("\n").slice(-15).join("\n")}`,
        ),
      ),
    );
  });
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { url, child, log: () => output, kill: () => end("SIGKILL"), stop: () => end("SIGTERM") };
}
