/** `pdd conformance`: runs the suite against a cloud or a device under test. */
import { existsSync, writeFileSync } from "node:fs";
import { parseFlags, readFileFlag, UsageError, type Command } from "./kit.js";
import type { CaseResult } from "../conformance/case.js";
import { execLauncher } from "../conformance/launcher.js";
import { junit, table } from "../conformance/report.js";
import { runConformance, runDeviceConformance, TargetError } from "../conformance/runner.js";

export const conformanceCommand: Command = {
  name: "conformance",
  summary:
    "run the conformance suite against a cloud (the suite plays the device) or a device (the suite plays the cloud)",
  usage:
    "pdd conformance --role cloud --target URL [--codec proto|msgpack] [--ca PEM | --cert-sha256 HEX] [--token T] [options]\n" +
    "       pdd conformance --role device --listen URL [--exec COMMAND] [--codec proto|msgpack] [options]\n" +
    "  options: [--model GGUF] [--case TEXT[,TEXT]] [--json FILE] [--junit FILE] [--verbose]\n" +
    "  --model GGUF: the peer's model file, to check the fingerprints it announces (Appendix B).\n" +
    "  --exec COMMAND runs the device once per case; {url}, {codec}, {ca} and {cert_sha256} are replaced,\n" +
    "  and the command must print the answer it displays on stdout.",
  async run(argv) {
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
          onResult: progress,
        });
      } else if (values.role === "device") {
        if (!values.listen) throw new UsageError("--role device needs --listen URL (for example ws://127.0.0.1:7400)");
        if (values.target) throw new UsageError("--target is for --role cloud");
        if (!values.exec)
          console.error(`pdd conformance: listening on ${values.listen}; connect the device under test once per case`);
        results = await runDeviceConformance({
          role: "device",
          listen: values.listen,
          launcher: values.exec ? execLauncher(values.exec) : undefined,
          codecs,
          filter: values.case,
          modelFile: modelFlag(values.model),
          onResult: progress,
        });
      } else {
        throw new UsageError("--role must be cloud or device");
      }
    } catch (e) {
      if (e instanceof TargetError) throw new UsageError(e.message);
      if (e instanceof UsageError) throw e;
      console.error(`pdd conformance: ${(e as Error).message}`);
      return 1;
    }
    console.log(table(results));
    if (values.verbose)
      for (const r of results.filter((x) => x.status === "fail"))
        console.log(`\n${r.id} [${r.transport}/${r.codec}]\n  ${r.details}\n${r.log.map((l) => `  ${l}`).join("\n")}`);
    if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
    if (values.junit) writeFileSync(values.junit, junit(results));
    return results.some((r) => r.status === "fail") ? 1 : 0;
  },
};

function modelFlag(path: string | undefined): string | undefined {
  if (path !== undefined && !existsSync(path)) throw new UsageError(`--model: no such file: ${path}`);
  return path;
}

function progress(r: CaseResult): void {
  if (process.stderr.isTTY)
    process.stderr.write(`\r\x1b[K${r.status === "fail" ? "FAIL" : "ok  "} ${r.id} [${r.transport}/${r.codec}]`);
}
