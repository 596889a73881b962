/**
 * llama-server, built once per llama.cpp version from the source node-llama-cpp
 * ships (see llama-cpp-source.ts), into `<llamaServerCacheRoot()>/<version>/`:
 *
 *   src/               the bundle's clone, with node-llama-cpp's patches
 *   build/bin/llama-server
 *   build.log          everything git and cmake printed
 *   llama-server.json  written last, after the binary ran: its presence means "built"
 *
 * `ensureLlamaServer()` finds the binary or builds it; it never skips: a
 * missing tool or a failed build is a PddError naming the cause (with the
 * log's tail). `$PDD_LLAMA_SERVER` names a binary of one's own instead.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  accessSync,
  constants,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  watch,
  writeFileSync,
  type WriteStream,
} from "node:fs";
import { availableParallelism, homedir } from "node:os";
import { join } from "node:path";
import { ErrorCode, PddError } from "../proto/index.js";
import { type LlamaCppSource, llamaCppSource, llamaCppVersion } from "./llama-cpp-source.js";

/**
 * CPU only, no network code (curl, OpenSSL), no tests or examples: what the
 * cloud needs and what builds offline. GGML_NATIVE=OFF keeps the binary
 * portable (AVX2/FMA/F16C baseline, not -march=native); static libraries make
 * it one relocatable file.
 */
export const LLAMA_SERVER_CMAKE_FLAGS = [
  "-DCMAKE_BUILD_TYPE=Release",
  "-DLLAMA_CURL=OFF",
  "-DLLAMA_OPENSSL=OFF",
  "-DGGML_NATIVE=OFF",
  "-DLLAMA_BUILD_TESTS=OFF",
  "-DLLAMA_BUILD_EXAMPLES=OFF",
  "-DBUILD_SHARED_LIBS=OFF",
];

export interface LlamaServerBuild {
  binary: string;
  /** `<release>-<commit>`, the cache folder's name. */
  version: string;
  /** True when this call built it. */
  built: boolean;
  /** Wall-clock seconds of the build (clone, configure, compile), this call's or the recorded one. */
  seconds?: number;
}

export interface EnsureOptions {
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Parallel compile jobs; default: every core. */
  jobs?: number;
}

/**
 * Outside any working copy, so that every checkout (and CI's cache) shares one
 * build of a version: `$PDD_LLAMA_SERVER_CACHE`, else
 * `$XDG_CACHE_HOME/pd-device/llama-server`, else `~/.cache/pd-device/llama-server`.
 */
export function llamaServerCacheRoot(): string {
  const own = process.env.PDD_LLAMA_SERVER_CACHE;
  if (own) return own;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "pd-device", "llama-server");
}

export function llamaServerDir(source: LlamaCppSource = llamaCppSource()): string {
  return join(llamaServerCacheRoot(), llamaCppVersion(source));
}

const stampOf = (dir: string) => join(dir, "llama-server.json");
const binaryOf = (dir: string) => join(dir, "build", "bin", "llama-server");

/** The binary to run, or undefined when it is not built yet. A bad `$PDD_LLAMA_SERVER` is an error, not a miss. */
export function findLlamaServer(): LlamaServerBuild | undefined {
  const own = process.env.PDD_LLAMA_SERVER;
  if (own) {
    try {
      accessSync(own, constants.X_OK);
    } catch (e) {
      throw new PddError(ErrorCode.UNAVAILABLE, `$PDD_LLAMA_SERVER names ${own}, which is not an executable file`, {
        cause: e,
      });
    }
    return { binary: own, version: "PDD_LLAMA_SERVER", built: false };
  }
  const source = llamaCppSource();
  const dir = llamaServerDir(source);
  if (!existsSync(stampOf(dir)) || !existsSync(binaryOf(dir))) return undefined;
  const stamp = JSON.parse(readFileSync(stampOf(dir), "utf8")) as { commit?: string; seconds?: number };
  if (stamp.commit !== source.commit) return undefined;
  return { binary: binaryOf(dir), version: llamaCppVersion(source), built: false, seconds: stamp.seconds };
}

/** Finds llama-server, or builds it (minutes: every core for ~9 min on 2 cores). */
export async function ensureLlamaServer(options: EnsureOptions = {}): Promise<LlamaServerBuild> {
  const log = options.log ?? (() => {});
  const found = findLlamaServer();
  if (found) return found;
  checkTools();
  const source = llamaCppSource();
  const dir = llamaServerDir(source);
  mkdirSync(dir, { recursive: true });
  const unlock = await lock(dir, log);
  try {
    const again = findLlamaServer(); // another process may have built it while we waited
    if (again) return again;
    return await build(source, dir, options.jobs ?? availableParallelism(), log);
  } finally {
    unlock();
  }
}

function checkTools(): void {
  const missing = (tool: string) => spawnSync(tool, ["--version"], { stdio: "ignore" }).error !== undefined;
  const hint = "(needed to build llama-server; on Debian/Ubuntu: apt-get install git cmake g++)";
  if (missing("git")) throw new PddError(ErrorCode.UNAVAILABLE, `git is not installed ${hint}`);
  if (missing("cmake")) throw new PddError(ErrorCode.UNAVAILABLE, `cmake is not installed ${hint}`);
  const cxx = process.env.CXX;
  if (cxx ? missing(cxx) : missing("c++") && missing("g++"))
    throw new PddError(ErrorCode.UNAVAILABLE, `no C++ compiler (${cxx ?? "c++ or g++"}) found ${hint}`);
}

async function build(source: LlamaCppSource, dir: string, jobs: number, log: (line: string) => void) {
  const started = performance.now();
  const logFile = join(dir, "build.log");
  const out = createWriteStream(logFile);
  const step = async (what: string, cmd: string, args: string[], onLine?: (line: string) => void) => {
    out.write(`\n$ ${cmd} ${args.join(" ")}\n`);
    const code = await run(cmd, args, dir, out, onLine);
    if (code !== 0) {
      await new Promise((r) => out.end(r));
      throw new PddError(
        ErrorCode.UNAVAILABLE,
        `llama-server build failed while ${what} (${cmd} exited with ${code}); log: ${logFile}\n${tail(logFile, 30)}`,
      );
    }
  };
  try {
    const version = llamaCppVersion(source);
    log(`llama.cpp ${version} (node-llama-cpp's bundle) → ${dir}`);
    rmSync(join(dir, "src"), { recursive: true, force: true });
    rmSync(join(dir, "build"), { recursive: true, force: true });
    log("cloning the bundle");
    await step("cloning the bundle", "git", ["-c", "advice.detachedHead=false", "clone", "-q", source.bundle, "src"]);
    for (const patch of source.patches) await applyPatch(patch, step, dir, log);
    log("configuring (cmake)");
    const generator = spawnSync("ninja", ["--version"], { stdio: "ignore" }).error ? [] : ["-G", "Ninja"];
    await step("configuring", "cmake", ["-S", "src", "-B", "build", ...generator, ...LLAMA_SERVER_CMAKE_FLAGS]);
    log(`compiling with ${jobs} job(s); this takes minutes`);
    const progress = (line: string) => {
      if (/^\[\s*\d+(%|\/\d+)\]/.test(line)) log(line.length > 120 ? `${line.slice(0, 117)}...` : line);
    };
    await step("compiling", "cmake", ["--build", "build", "--target", "llama-server", "-j", String(jobs)], progress);
    await step("checking the binary", binaryOf(dir), ["--version"]);
    const seconds = Math.round((performance.now() - started) / 1000);
    const stamp = { version, commit: source.commit, release: source.release, flags: LLAMA_SERVER_CMAKE_FLAGS, seconds };
    writeFileSync(`${stampOf(dir)}.tmp`, `${JSON.stringify(stamp, null, 2)}\n`);
    renameSync(`${stampOf(dir)}.tmp`, stampOf(dir));
    log(`built in ${seconds} s: ${binaryOf(dir)}`);
    return { binary: binaryOf(dir), version, built: true, seconds };
  } finally {
    out.end();
  }
}

type Step = (what: string, cmd: string, args: string[]) => Promise<void>;

/** Applies a patch as node-llama-cpp does, skipping one the source already contains (it applies in reverse). */
async function applyPatch(patch: string, step: Step, dir: string, log: (line: string) => void): Promise<void> {
  const src = join(dir, "src");
  const applied = spawnSync("git", ["apply", "--reverse", "--check", "--ignore-whitespace", patch], { cwd: src });
  if (applied.status === 0) {
    log(`patch ${patch} is already in the source`);
    return;
  }
  log(`applying node-llama-cpp's patch ${patch}`);
  await step(`applying ${patch}`, "git", ["-C", "src", "apply", "--ignore-whitespace", patch]);
}

function run(cmd: string, args: string[], cwd: string, out: WriteStream, onLine?: (line: string) => void) {
  return new Promise<number>((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let partial = "";
    const take = (chunk: Buffer) => {
      out.write(chunk);
      if (!onLine) return;
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) onLine(l);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", (e) =>
      reject(new PddError(ErrorCode.UNAVAILABLE, `cannot run ${cmd}: ${e.message}`, { cause: e })),
    );
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/**
 * One build per folder at a time, across processes: a lock file holding the
 * builder's pid. A waiter wakes when the folder changes (the lock goes away),
 * and also re-checks every few seconds, because a builder that was killed
 * leaves its lock behind without an event.
 */
async function lock(dir: string, log: (line: string) => void): Promise<() => void> {
  const file = join(dir, ".build.lock");
  let told = 0;
  for (;;) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const holder = Number(readFileSync(file, "utf8"));
    if (!Number.isInteger(holder) || holder <= 0 || !alive(holder)) {
      log(`removing a stale build lock (pid ${holder} is gone)`);
      rmSync(file, { force: true });
      continue;
    }
    if (told !== holder) log(`waiting for process ${holder}, which is building llama-server in ${dir}`);
    told = holder;
    await new Promise<void>((resolve) => {
      const watcher = watch(dir, (_event, name) => name === ".build.lock" && done());
      const gone = () => !existsSync(file) || !alive(holder);
      const timer = setInterval(() => gone() && done(), 5000);
      const done = () => {
        watcher.close();
        clearInterval(timer);
        resolve();
      };
      if (gone()) done(); // it may have gone before the watcher started
    });
  }
}
