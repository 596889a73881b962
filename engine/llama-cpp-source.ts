/**
 * The llama.cpp source node-llama-cpp ships: a git bundle of the exact
 * release its prebuilt binding was built from, plus the patches it applies
 * when it builds from source. Building llama-server from this bundle gives a
 * server on the same llama.cpp as the reference peers, offline.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { ErrorCode, PddError } from "../proto/index.js";

export interface LlamaCppSource {
  /** node-llama-cpp's package folder. */
  packageDir: string;
  /** The git bundle of llama.cpp (`llama/gitRelease.bundle`). */
  bundle: string;
  /** The bundle's HEAD commit (40 hex digits). */
  commit: string;
  /** The release tag node-llama-cpp records for it (`llama/llama.cpp.info.json`). */
  release: string;
  /** Patch files node-llama-cpp applies on top, in order. */
  patches: string[];
}

/** Finds node-llama-cpp's package folder without loading the package (only engine.ts loads it). */
function nodeLlamaCppDir(): string {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve("node-llama-cpp");
  } catch (e) {
    throw new PddError(ErrorCode.UNAVAILABLE, "node-llama-cpp is not installed: it carries llama.cpp's source", {
      cause: e,
    });
  }
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name === "node-llama-cpp") return dir;
  }
  throw new PddError(ErrorCode.UNAVAILABLE, `no node-llama-cpp package.json above ${entry}`);
}

/**
 * A v2/v3 git bundle starts with a text header: a signature line, optional
 * capability and prerequisite lines, then `<sha> <ref>` lines, then a blank
 * line. Reading it directly keeps the version check free of a `git` process.
 */
export function bundleHead(bundle: string): string {
  const fd = openSync(bundle, "r");
  const buf = Buffer.alloc(4096);
  const n = readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  const lines = buf.subarray(0, n).toString("latin1").split("\n");
  if (!/^# v[23] git bundle$/.test(lines[0] ?? ""))
    throw new PddError(ErrorCode.UNAVAILABLE, `${bundle} is not a git bundle`);
  const refs = lines.slice(1, lines.indexOf("")).filter((l) => /^[0-9a-f]{40} /.test(l));
  const head = refs.find((l) => l.endsWith(" HEAD")) ?? refs[0];
  if (!head) throw new PddError(ErrorCode.UNAVAILABLE, `${bundle} names no commit`);
  return head.slice(0, 40);
}

export function llamaCppSource(): LlamaCppSource {
  const packageDir = nodeLlamaCppDir();
  const llamaDir = join(packageDir, "llama");
  const bundle = join(llamaDir, "gitRelease.bundle");
  if (!existsSync(bundle))
    throw new PddError(ErrorCode.UNAVAILABLE, `node-llama-cpp at ${packageDir} ships no llama.cpp bundle (${bundle})`);
  const infoFile = join(llamaDir, "llama.cpp.info.json");
  const release = existsSync(infoFile)
    ? String(JSON.parse(readFileSync(infoFile, "utf8")).tag ?? "unknown")
    : "unknown";
  const patchDir = join(llamaDir, "patches");
  const patches = existsSync(patchDir)
    ? readdirSync(patchDir)
        .filter((f) => f.endsWith(".diff") || f.endsWith(".patch"))
        .sort()
        .map((f) => join(patchDir, f))
    : [];
  return { packageDir, bundle, commit: bundleHead(bundle), release, patches };
}

/** The name of a build: the release node-llama-cpp records and the bundle's commit, e.g. `v0.4.0-80fb11ac73e6`. */
export function llamaCppVersion(source: LlamaCppSource): string {
  return `${source.release.replace(/[^\w.-]/g, "_")}-${source.commit.slice(0, 12)}`;
}
