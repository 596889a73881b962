/**
 * `pdd`'s dispatcher: finds the command, loads its module, runs it, and turns
 * what it throws into an exit status and one line on stderr (2 for a usage
 * error, 1 for a typed failure). Help needs no command module at all.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { COMMANDS, type CommandSpec } from "./commands.js";
import { flagLines } from "./flag-help.js";
import { PACKAGE_ROOT, processIo, UsageError, type Io } from "./kit.js";

function version(): string {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

function listing(commands: readonly CommandSpec[]): string[] {
  const width = Math.max(...commands.map((c) => c.name.length));
  return commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
}

function help(): string {
  return [
    `pdd ${version()}: P/D-Device protocol tools, reference peers and conformance suite`,
    "",
    "usage: pdd <command> [flags]",
    "",
    ...listing(COMMANDS),
    "",
    "pdd <command> --help shows a command's flags.",
  ].join("\n");
}

/** The command `argv` names: the longest match, so "device serve" wins over "device". */
function find(argv: string[]): CommandSpec | undefined {
  return COMMANDS.filter((c) => c.name.split(" ").every((w, i) => argv[i] === w)).sort(
    (a, b) => b.name.length - a.name.length,
  )[0];
}

/** The commands under a first word that is not a command itself ("bench", "model"). */
function group(word: string | undefined): CommandSpec[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${word} `));
}

const wantsHelp = (argv: string[]) => argv.includes("--help") || argv.includes("-h");

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.log(help());
    return 0;
  }
  if (argv[0] === "--version" || argv[0] === "version") {
    io.log(version());
    return 0;
  }
  const match = find(argv);
  if (!match) {
    const sub = group(argv[0]);
    if (sub.length === 0) {
      io.error(`pdd: unknown command "${argv[0]}"\n\n${help()}`);
      return 2;
    }
    const text = `usage: pdd ${argv[0]} <subcommand> [flags]\n\n${listing(sub).join("\n")}`;
    if (argv.length === 2 && wantsHelp(argv)) {
      io.log(text);
      return 0;
    }
    io.error(
      argv[1] === undefined
        ? `pdd ${argv[0]}: give a subcommand\n${text}`
        : `pdd ${argv[0]}: unknown subcommand "${argv[1]}"\n${text}`,
    );
    return 2;
  }
  const rest = argv.slice(match.name.split(" ").length);
  if (wantsHelp(rest)) {
    const sub = group(match.name);
    const flags = flagLines(match.name);
    io.log(
      `usage: ${match.usage}\n\n${match.summary}${flags.length ? `\n\n${flags.join("\n")}` : ""}` +
        `${sub.length ? `\n\nsubcommands:\n${listing(sub).join("\n")}` : ""}`,
    );
    return 0;
  }
  try {
    return await (await match.load())(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.error(`pdd ${match.name}: ${e.message}\nusage: ${match.usage}`);
      return 2;
    }
    // The command has loaded proto/ already; help never pays for it.
    const { PddError } = await import("../proto/index.js");
    if (e instanceof PddError) {
      // Typed failures (a bad model file, an unreachable cloud) are one line, not a trace.
      io.error(`pdd ${match.name}: ${e.message}`);
      return 1;
    }
    if (isSystemError(e)) {
      // The operating system refused something the user asked for (a busy port, a file that is a
      // directory): one line naming it, like a typed failure. A bug (a TypeError) still shows its trace.
      io.error(`pdd ${match.name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

/** An error Node raises for a failed system call: it carries the call and an errno code such as EADDRINUSE. */
function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string" && "syscall" in e;
}
