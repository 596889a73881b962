/**
 * `pdd demo`: the README's main job (bench/demo.ts runs it): a cloud and a
 * device on loopback, one prompt over every transport, printed next to the
 * device-only baseline.
 */
import { runDemo as demo, type DemoRun } from "../bench/index.js";
import { choiceFlag, intFlag, parseFlags, type Run } from "./kit.js";

export const runDemo: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    notes: { type: "string" },
    "max-tokens": { type: "string" },
    budget: { type: "string" },
    "device-ms-per-token": { type: "string" },
    codec: { type: "string" },
    json: { type: "boolean" },
  });
  const budget = values.budget === undefined ? ("auto" as const) : intFlag("budget", values.budget, 24, 1, 2048);
  const slow = intFlag("device-ms-per-token", values["device-ms-per-token"], 2, 0, 1000);
  const maxTokens = intFlag("max-tokens", values["max-tokens"], 160, 1, 2048);
  const run = await demo({
    notes: intFlag("notes", values.notes, 40, 1, 400),
    maxTokens,
    budget,
    deviceMsPerToken: slow,
    codec: choiceFlag("codec", values.codec, ["proto", "msgpack"] as const, "proto"),
    log: values.json ? undefined : io.log,
  });
  if (values.json) {
    for (const r of run.rows)
      io.log(
        JSON.stringify({ transport: r.transport, ...r.report, cloudTokenIds: undefined, deviceTokenIds: undefined }),
      );
    return 0;
  }
  io.log(
    `\nprompt: ${run.promptTokens} tokens; answer: ${maxTokens} tokens; cloud budget ${run.budget} ` +
      `(${budget === "auto" ? "sized to the device's calibrated speed" : "--budget"}); device emulates ` +
      `${slow} ms per token\n`,
  );
  for (const line of table(run)) io.log(line);
  io.log(`\nanswer: ${JSON.stringify(run.rows[1]!.report.text)}`);
  return 0;
};

/** The Markdown table of a demo run, against its first row (device only). */
function table(run: DemoRun): string[] {
  const base = run.rows[0]!.report;
  const header = [
    "transport",
    "mode",
    "TTFT ms",
    "TTFT vs device-only",
    "TPOT p50 ms",
    "TPOT max ms",
    "cloud tokens",
    "takeover k",
    "device prefill",
    "same text",
  ];
  const cells = run.rows.map(({ transport, report: r }) => [
    transport,
    r.mode,
    r.ttftMs.toFixed(1),
    `${((1 - r.ttftMs / base.ttftMs) * 100).toFixed(0)}% lower`,
    r.tpotMs.p50.toFixed(1),
    r.tpotMs.max.toFixed(1),
    String(r.cloudTokens),
    r.takeoverIndex === null ? "—" : String(r.takeoverIndex),
    r.kvImported ? "KV imported" : r.mode === "local" ? "computed" : "computed (amortized)",
    r.text === base.text ? "yes" : "NO",
  ]);
  cells[0]![3] = "baseline";
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.map(line)];
}
