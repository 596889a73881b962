/** Reads a request trace in the Azure LLM inference CSV format (TIMESTAMP,ContextTokens,GeneratedTokens). */
import { readFileSync } from "node:fs";

export interface TraceRequest {
  /** Arrival, ms from the first request. */
  atMs: number;
  promptTokens: number;
  answerTokens: number;
}

export class TraceError extends Error {}

export function readTrace(path: string, limit = Infinity): TraceRequest[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new TraceError(`cannot read trace ${path}: ${(e as Error).message}`);
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  const header = lines
    .shift()
    ?.split(",")
    .map((h) => h.trim());
  const col = (name: string) => header?.indexOf(name) ?? -1;
  const [ts, ctx, gen] = [col("TIMESTAMP"), col("ContextTokens"), col("GeneratedTokens")];
  if (ts < 0 || ctx < 0 || gen < 0)
    throw new TraceError(`${path}: expected the header TIMESTAMP,ContextTokens,GeneratedTokens`);
  const out: TraceRequest[] = [];
  let t0: number | undefined;
  for (const [n, line] of lines.entries()) {
    if (out.length >= limit) break;
    const f = line.split(",");
    // "2023-11-16 18:15:46.6805900": up to 7 fractional digits; Date takes 3.
    const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d+))?/.exec(f[ts]?.trim() ?? "");
    const p = Number(f[ctx]);
    const g = Number(f[gen]);
    if (!m || !Number.isInteger(p) || !Number.isInteger(g) || p < 0 || g < 0)
      throw new TraceError(`${path}:${n + 2}: not a trace row: ${line.slice(0, 80)}`);
    const at = Date.parse(`${m[1]}T${m[2]}Z`) + Number(`0.${m[3] ?? "0"}`) * 1000;
    t0 ??= at;
    if (p === 0 || g === 0) continue; // nothing to serve
    out.push({ atMs: at - t0, promptTokens: p, answerTokens: g });
  }
  if (out.length === 0) throw new TraceError(`${path}: no requests`);
  return out;
}
