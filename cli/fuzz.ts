/** `pdd fuzz`: structured fuzzing of a live cloud (by default, a reference cloud started in this process). */
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { intFlag, PACKAGE_ROOT, parseFlags, readFileFlag, UsageError, type Run } from "./kit.js";
import { FuzzFailure, fuzzCloud, type Codec } from "../conformance/index.js";

export const CORPUS_FILE = join(PACKAGE_ROOT, "conformance", "fuzz-corpus", "cloud.json");

export const runFuzz: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    target: { type: "string" },
    codec: { type: "string" },
    cases: { type: "string" },
    seed: { type: "string" },
    token: { type: "string" },
    ca: { type: "string" },
  });
  const cases = intFlag("cases", values.cases, 20_000, 1, 100_000_000);
  const seed = intFlag("seed", values.seed, 1, 0, 2 ** 31);
  if (values.codec && values.codec !== "proto" && values.codec !== "msgpack")
    throw new UsageError("--codec must be proto or msgpack");
  const ca = readFileFlag("ca", values.ca);
  let targets: { url: string; codec: Codec }[];
  let stop = async () => {};
  let certPem = ca;
  if (values.target) {
    targets = [{ url: values.target, codec: (values.codec as Codec | undefined) ?? "proto" }];
  } else {
    const { startCloud } = await import("../reference-cloud/index.js");
    const cloud = await startCloud({
      threads: 1,
      logLevel: "silent",
      listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
    });
    stop = () => cloud.close({ drainSeconds: 0 });
    certPem = cloud.certificate.cert;
    targets = [
      { url: cloud.urls.ws!, codec: "proto" },
      { url: cloud.urls.ws!, codec: "msgpack" },
      { url: cloud.urls.grpc!, codec: "proto" },
      { url: cloud.urls.webtransport!, codec: "proto" },
    ].filter((t) => !values.codec || t.codec === values.codec) as { url: string; codec: Codec }[];
  }
  const certHash = certPem
    ? new Uint8Array(createHash("sha256").update(new X509Certificate(certPem).raw).digest())
    : undefined;
  let failed = false;
  try {
    for (const t of targets) {
      try {
        const r = await fuzzCloud({
          target: t.url,
          codec: t.codec,
          cases,
          seed,
          token: values.token,
          ca: certPem,
          certHash,
          onProgress: (n) => io.progress(`\r${t.url} ${t.codec}: ${n}/${cases}`),
        });
        io.progress("\r\x1b[K");
        io.log(
          `${t.url} [${t.codec}]: ${r.cases} cases survived in ${(r.ms / 1000).toFixed(1)} s on ${r.connections} ` +
            `connections; closes ${JSON.stringify(r.closes)}; request errors ${JSON.stringify(r.errors)}`,
        );
      } catch (e) {
        if (!(e instanceof FuzzFailure)) throw e;
        failed = true;
        io.error(`FAIL ${t.url} [${t.codec}]: ${e.message}`);
        const corpus = JSON.parse(readFileSync(CORPUS_FILE, "utf8")) as unknown[];
        corpus.push({ codec: t.codec, ...e.input });
        writeFileSync(CORPUS_FILE, `${JSON.stringify(corpus, null, 2)}\n`);
        io.error(`the input is saved in ${CORPUS_FILE} as a regression test`);
      }
    }
  } finally {
    await stop();
  }
  return failed ? 1 : 0;
};
