/**
 * `pdd`: the one command-line entry point. Each command's wiring is a file
 * of this folder; this file only dispatches.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT, UsageError, type Command } from "./kit.js";
import { PddError } from "../proto/index.js";
import { demoCommand } from "../bench/demo.js";
import { cloudCommand } from "./cloud.js";
import { conformanceCommand } from "./conformance.js";
import { decodeCommand } from "./decode.js";
import { deviceCommand, deviceServeCommand } from "./device.js";
import { fuzzCommand } from "./fuzz.js";
import { modelCommand } from "./model.js";
import { benchTraceCommand, planCommand } from "./plan.js";

const commands: Command[] = [
  demoCommand,
  cloudCommand,
  deviceCommand,
  deviceServeCommand,
  conformanceCommand,
  fuzzCommand,
  planCommand,
  benchTraceCommand,
  modelCommand,
  decodeCommand,
];

function version(): string {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `pdd ${version()}: P/D-Device protocol tools, reference peers and conformance suite`,
    "",
    "usage: pdd <command> [flags]",
    "",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "pdd <command> --help shows a command's flags.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    console.log(help());
    return 0;
  }
  if (argv[0] === "--version" || argv[0] === "version") {
    console.log(version());
    return 0;
  }
  // Longest match first, so "bench codec" wins over "bench".
  const match = commands
    .filter((c) => {
      const words = c.name.split(" ");
      return words.every((w, i) => argv[i] === w);
    })
    .sort((a, b) => b.name.length - a.name.length)[0];
  if (!match) {
    console.error(`pdd: unknown command "${argv[0]}"\n\n${help()}`);
    return 2;
  }
  const rest = argv.slice(match.name.split(" ").length);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`usage: ${match.usage}\n\n${match.summary}`);
    return 0;
  }
  try {
    return await match.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`pdd ${match.name}: ${e.message}\nusage: ${match.usage}`);
      return 2;
    }
    if (e instanceof PddError) {
      // Typed failures (a bad model file, an unreachable cloud) are one line, not a trace.
      console.error(`pdd ${match.name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
