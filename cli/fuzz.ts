/** `pdd fuzz`: structured fuzzing of a live cloud (by default, a reference cloud started in this process). */
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { intFlag, PACKAGE_ROOT, parseFlags, readFileFlag, UsageError, type Io, type Run } from "./kit.js";
import { FuzzFailure, fuzzCloud, type Codec, type FuzzReport } from "../conformance/index.js";
import { cloudUrl } from "./device-flags.js";

export const CORPUS_FILE = join(PACKAGE_ROOT, "conformance", "fuzz-corpus", "cloud.json");

/** One target's outcome in the --json report. */
interface TargetResult {
  url: string;
  codec: Codec;
  report?: FuzzReport;
  failure?: { cause: string; message: string; note: string };
}

interface Targets {
  targets: { url: string; codec: Codec }[];
  certPem?: string;
  metrics?: string;
  stop(): Promise<void>;
}

/** The target given, or a reference cloud on loopback (with its metrics) over every binding. */
async function targetsOf(values: { target?: string; codec?: string; metrics?: string }, ca?: string): Promise<Targets> {
  if (values.target)
    return {
      targets: [{ url: values.target, codec: (values.codec as Codec | undefined) ?? "proto" }],
      certPem: ca,
      metrics: values.metrics,
      stop: async () => {},
    };
  const { startCloud } = await import("../reference-cloud/index.js");
  const cloud = await startCloud({
    threads: 1,
    logLevel: "silent",
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
    metricsPort: 0,
  });
  const all: { url: string; codec: Codec }[] = [
    { url: cloud.urls.ws!, codec: "proto" },
    { url: cloud.urls.ws!, codec: "msgpack" },
    { url: cloud.urls.grpc!, codec: "proto" },
    { url: cloud.urls.webtransport!, codec: "proto" },
  ];
  return {
    targets: all.filter((t) => !values.codec || t.codec === values.codec),
    certPem: cloud.certificate.cert,
    metrics: cloud.urls.metrics,
    stop: () => cloud.close({ drainSeconds: 0 }),
  };
}

/** A failure named on stderr; a case's input saved in the corpus (a liveness check has none of its own). */
function reportFailure(t: { url: string; codec: Codec }, e: FuzzFailure, io: Io): TargetResult {
  io.error(`FAIL ${t.url} [${t.codec}] (${e.why}): ${e.message}`);
  if (e.input.hex.length > 0) {
    const corpus = JSON.parse(readFileSync(CORPUS_FILE, "utf8")) as unknown[];
    corpus.push({ codec: t.codec, ...e.input });
    writeFileSync(CORPUS_FILE, `${JSON.stringify(corpus, null, 2)}\n`);
    io.error(`the input is saved in ${CORPUS_FILE} as a regression test`);
  }
  return { ...t, failure: { cause: e.why, message: e.message, note: e.input.note } };
}

export const runFuzz: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    target: { type: "string" },
    codec: { type: "string" },
    cases: { type: "string" },
    seed: { type: "string" },
    token: { type: "string" },
    ca: { type: "string" },
    metrics: { type: "string" },
    "check-every": { type: "string" },
    json: { type: "string" },
  });
  const cases = intFlag("cases", values.cases, 20_000, 1, 100_000_000);
  const seed = intFlag("seed", values.seed, 1, 0, 2 ** 31);
  const checkEvery = intFlag("check-every", values["check-every"], 250, 1, 100_000_000);
  if (values.codec && values.codec !== "proto" && values.codec !== "msgpack")
    throw new UsageError("--codec must be proto or msgpack");
  if (values.metrics && !/^https?:\/\//.test(values.metrics)) throw new UsageError("--metrics must be an http(s) URL");
  cloudUrl(values.target, "--target"); // a wrong URL is a usage error (exit 2), not a cloud that gave no answer
  if (values.metrics && !values.target)
    throw new UsageError("--metrics goes with --target (the in-process cloud's are used)");
  const t = await targetsOf(values, readFileFlag("ca", values.ca));
  const certHash = t.certPem
    ? new Uint8Array(createHash("sha256").update(new X509Certificate(t.certPem).raw).digest())
    : undefined;
  const results: TargetResult[] = [];
  try {
    for (const target of t.targets) {
      try {
        const r = await fuzzCloud({
          ...{ target: target.url, codec: target.codec, cases, seed, checkEvery, metrics: t.metrics },
          ...{ token: values.token, ca: t.certPem, certHash },
          onProgress: (n) => io.progress(`\r${target.url} ${target.codec}: ${n}/${cases}`),
        });
        io.progress("\r\x1b[K");
        io.log(
          `${target.url} [${target.codec}]: ${r.cases} cases survived in ${(r.ms / 1000).toFixed(1)} s on ${r.connections} ` +
            `connections, ${r.checks} full answers equal to the baseline (${r.baselineMs} ms); ` +
            `closes ${JSON.stringify(r.closes)}; request errors ${JSON.stringify(r.errors)}`,
        );
        results.push({ ...target, report: r });
      } catch (e) {
        if (!(e instanceof FuzzFailure)) throw e;
        results.push(reportFailure(target, e, io));
      }
    }
  } finally {
    await t.stop();
  }
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ results }, null, 2)}\n`);
  // 3: the cloud never answered the liveness question, so no case ran; 1: a case or a check failed.
  if (results.some((r) => r.failure?.cause === "baseline")) return 3;
  return results.some((r) => r.failure) ? 1 : 0;
};
