/** `pdd conformance`: runs the suite against a cloud or a device under test. */
import { existsSync, writeFileSync } from "node:fs";
import { parseFlags, readFileFlag, UsageError, type Io, type Run } from "./kit.js";
import {
  execLauncher,
  junit,
  runConformance,
  runDeviceConformance,
  STATUS_LABEL,
  junitUnreachable,
  table,
  TargetError,
  TargetUnreachable,
  type CaseResult,
} from "../conformance/index.js";
import { connectFailure } from "../reference-device/index.js";

/** Exit status when the target could not be reached and no case ran (0: all passed, 1: a case failed, 2: usage). */
export const UNREACHABLE_EXIT = 3;

export const runConformanceCommand: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    role: { type: "string" },
    target: { type: "string" },
    listen: { type: "string" },
    exec: { type: "string" },
    codec: { type: "string" },
    case: { type: "string" },
    ca: { type: "string" },
    model: { type: "string" },
    "cert-sha256": { type: "string" },
    token: { type: "string" },
    json: { type: "string" },
    junit: { type: "string" },
    verbose: { type: "boolean" },
  });
  if (values.codec && values.codec !== "proto" && values.codec !== "msgpack")
    throw new UsageError("--codec must be proto or msgpack");
  const codecs = values.codec ? [values.codec as "proto" | "msgpack"] : undefined;
  let results: CaseResult[];
  try {
    if (values.role === "cloud") {
      if (!values.target) throw new UsageError("--role cloud needs --target URL");
      if (values.listen || values.exec) throw new UsageError("--listen and --exec are for --role device");
      const hash = values["cert-sha256"];
      if (hash !== undefined && !/^[0-9a-fA-F]{64}$/.test(hash))
        throw new UsageError("--cert-sha256 must be 64 hex digits (the SHA-256 of the server certificate)");
      const certHash = hash ? new Uint8Array(Buffer.from(hash, "hex")) : undefined;
      results = await runConformance({
        role: "cloud",
        target: values.target,
        codecs,
        ca: readFileFlag("ca", values.ca),
        certHash,
        token: values.token,
        filter: values.case,
        modelFile: modelFlag(values.model),
        onResult: (r, done, total) => io.error(progressLine(r, done, total)),
      });
    } else if (values.role === "device") {
      if (!values.listen) throw new UsageError("--role device needs --listen URL (for example ws://127.0.0.1:7400)");
      if (values.target) throw new UsageError("--target is for --role cloud");
      const modelFile = modelFlag(values.model);
      // With the device's model the suite checks the answers it displays (and can build loadable KV images).
      const own = modelFile ? await (await import("./conformance-oracle.js")).engineOracle(modelFile) : undefined;
      try {
        results = await runDeviceConformance({
          role: "device",
          listen: values.listen,
          launcher: values.exec ? execLauncher(values.exec) : undefined,
          codecs,
          filter: values.case,
          modelFile,
          oracle: own?.oracle,
          onResult: (r, done, total) => io.error(progressLine(r, done, total)),
          onListening: (url) =>
            values.exec ||
            io.error(`pdd conformance: listening on ${url}; connect the device under test once per case`),
        });
      } finally {
        await own?.close();
      }
    } else {
      throw new UsageError("--role must be cloud or device");
    }
  } catch (e) {
    if (e instanceof TargetError) throw new UsageError(e.message);
    if (e instanceof TargetUnreachable) return cannotReach(e, values.target ?? values.listen ?? "", values, io);
    if (e instanceof UsageError) throw e;
    io.error(`pdd conformance: ${(e as Error).message}`);
    return 1;
  }
  io.log(table(results));
  if (values.verbose)
    for (const r of results.filter((x) => x.status === "fail"))
      io.log(`\n${r.id} [${r.transport}/${r.codec}]\n  ${r.details}\n${r.log.map((l) => `  ${l}`).join("\n")}`);
  if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
  if (values.junit) writeFileSync(values.junit, junit(results));
  return results.some((r) => r.status === "fail") ? 1 : 0;
};

/**
 * One line on stderr naming the cause (the device's classifier: refused, tls,
 * auth, not-found, protocol, ...; or timeout / exited for a device that never
 * connected), the same in the reports, and exit status 3.
 */
function cannotReach(e: TargetUnreachable, target: string, files: { json?: string; junit?: string }, io: Io): number {
  const failure = e.kind ? { cause: e.kind, message: `${e.kind}: ${e.message}` } : connectFailure(e, target);
  io.error(`pdd conformance: cannot reach the target: ${failure.message.replace(/\s*\n\s*/g, " / ")}`);
  if (files.json) {
    const report = { target, reached: false, cause: failure.cause, message: failure.message, results: [] };
    writeFileSync(files.json, JSON.stringify(report, null, 2));
  }
  if (files.junit) writeFileSync(files.junit, junitUnreachable(failure.message));
  return UNREACHABLE_EXIT;
}

function modelFlag(path: string | undefined): string | undefined {
  if (path !== undefined && !existsSync(path)) throw new UsageError(`--model: no such file: ${path}`);
  return path;
}

/** One line per case as it ends (on stderr, so that stdout holds only the table). */
export function progressLine(r: CaseResult, done: number, total: number): string {
  const width = String(total).length;
  return `[${String(done).padStart(width)}/${total}] ${STATUS_LABEL[r.status].padEnd(4)} ${r.transport}/${r.codec} ${r.id} (${r.ms} ms)`;
}
