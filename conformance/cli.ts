/** `pdd conformance`: runs the suite against a peer under test. */
import { writeFileSync } from "node:fs";
import { parseFlags, readFileFlag, UsageError, type Command } from "../cli-kit.js";
import { junit, table } from "./report.js";
import { runConformance, TargetError } from "./runner.js";

export const conformanceCommand: Command = {
  name: "conformance",
  summary: "run the conformance suite against a cloud under test (the suite plays the device)",
  usage: "pdd conformance --role cloud --target URL [--codec proto|msgpack] [--case TEXT] [--ca PEM] [--token T] [--json FILE] [--junit FILE] [--verbose]",
  async run(argv) {
    const { values } = parseFlags(argv, {
      role: { type: "string" },
      target: { type: "string" },
      codec: { type: "string" },
      case: { type: "string" },
      ca: { type: "string" },
      token: { type: "string" },
      json: { type: "string" },
      junit: { type: "string" },
      verbose: { type: "boolean" },
    });
    if (values.role !== "cloud") throw new UsageError("--role cloud is required (the device role is not implemented yet)");
    if (!values.target) throw new UsageError("--target URL is required");
    if (values.codec && values.codec !== "proto" && values.codec !== "msgpack") throw new UsageError("--codec must be proto or msgpack");
    let results;
    try {
      results = await runConformance({
        role: "cloud",
        target: values.target,
        codecs: values.codec ? [values.codec as "proto" | "msgpack"] : undefined,
        ca: readFileFlag("ca", values.ca),
        token: values.token,
        filter: values.case,
      });
    } catch (e) {
      if (e instanceof TargetError) throw new UsageError(e.message);
      console.error(`pdd conformance: cannot reach ${values.target}: ${(e as Error).message}`);
      return 1;
    }
    console.log(table(results));
    if (values.verbose) for (const r of results.filter((x) => x.status === "fail")) console.log(`\n${r.id} [${r.transport}/${r.codec}]\n  ${r.details}\n${r.log.map((l) => `  ${l}`).join("\n")}`);
    if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
    if (values.junit) writeFileSync(values.junit, junit(results));
    return results.some((r) => r.status === "fail") ? 1 : 0;
  },
};
