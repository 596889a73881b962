/**
 * The measured evidence of each case: printed as one JSON line (`EVIDENCE
 * {...}`) and appended to $HOSTILE_EVIDENCE when set, so a run of the suite
 * yields the table in hostile/README.md.
 */
import { appendFileSync } from "node:fs";

export type Evidence = Record<string, unknown> & { case: string };

export function record(e: Evidence): void {
  const line = JSON.stringify({ at: new Date().toISOString(), ...e }, (_k, v) =>
    typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 10) / 10 : typeof v === "bigint" ? String(v) : v,
  );
  process.stdout.write(`EVIDENCE ${line}\n`);
  const file = process.env.HOSTILE_EVIDENCE;
  if (file) appendFileSync(file, `${line}\n`);
}

/** Mebibytes, one decimal. */
export const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
