/**
 * The small toolkit every `pdd` subcommand is written with: strict argument
 * parsing whose mistakes are typed usage errors (exit status 2), never stack
 * traces.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";

/** The package root, whether running from sources or from dist/. */
export const PACKAGE_ROOT: string = fileURLToPath(
  new URL(import.meta.url.includes("/dist/") ? "../../" : "../", import.meta.url),
);

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * Where a command writes. `processIo` is the terminal; tests pass one that
 * captures, so that they run commands in-process.
 */
export interface Io {
  /** One line to standard output. */
  log(line: string): void;
  /** One line to standard error. */
  error(line: string): void;
  /** Text to standard output, as is (a streamed answer). */
  write(text: string): void;
  /** Progress on standard error, only when it is a terminal (bars, counters). */
  progress(text: string): void;
}

export const processIo: Io = {
  log: (line) => console.log(line),
  error: (line) => console.error(line),
  write: (text) => process.stdout.write(text),
  progress: (text) => {
    if (process.stderr.isTTY) process.stderr.write(text);
  },
};

/** A command's implementation: exit status 0 (done), 1 (a typed failure) or 2 (usage, via UsageError). */
export type Run = (argv: string[], io: Io) => Promise<number>;

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs in strict mode; its errors become UsageError. */
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: boolean }>
>;

export function parseFlags<O extends Options>(argv: string[], options: O, allowPositionals = false): Parsed<O> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Parses a flag as an integer in [min, max]. */
export function intFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be an integer, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Parses a flag as a finite number in [min, max]; `exclusiveMin` refuses min itself. */
export function numberFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min = 0,
  max = Number.POSITIVE_INFINITY,
  exclusiveMin = false,
): number {
  if (value === undefined) return fallback;
  const n = value.trim() === "" ? Number.NaN : Number(value);
  if (!Number.isFinite(n) || n < min || n > max || (exclusiveMin && n === min)) {
    throw new UsageError(
      `--${name} must be a number ${exclusiveMin ? "above" : "from"} ${min}${Number.isFinite(max) ? ` up to ${max}` : ""}, got "${value}"`,
    );
  }
  return n;
}

/** A non-negative number flag; positive unless `zero`. */
export const numFlag = (name: string, value: string | undefined, fallback: number, zero = false): number =>
  numberFlag(name, value, fallback, 0, Number.POSITIVE_INFINITY, !zero);

/** Parses a flag that must be one of `choices`. */
export function choiceFlag<T extends string>(
  name: string,
  value: string | undefined,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value))
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}; got "${value}"`);
  return value as T;
}

/** Reads the file a flag names; a missing or unreadable file is a UsageError. */
export function readFileFlag(name: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read --${name}: ${(e as Error).message}`);
  }
}
