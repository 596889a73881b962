/**
 * `pdd demo`: the README's main job (bench/demo.ts runs it): a cloud behind
 * the network emulator and a device, one long prompt over every binding,
 * printed next to the device-only and cloud-only baselines, with what sets
 * each number stated above the table.
 */
import { DEFAULT_NOTES, DEVICE_SPEEDS, runDemo as demo, type DemoRow, type DemoRun } from "../bench/index.js";
import { choiceFlag, intFlag, parseFlags, type Run } from "./kit.js";

export const runDemo: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    model: { type: "string" },
    notes: { type: "string" },
    "max-tokens": { type: "string" },
    budget: { type: "string" },
    device: { type: "string" },
    "no-sweep": { type: "boolean" },
    "rtt-ms": { type: "string" },
    "bandwidth-mbps": { type: "string" },
    codec: { type: "string" },
    json: { type: "boolean" },
  });
  const run = await demo({
    modelPath: values.model,
    notes: values.notes === undefined ? "auto" : intFlag("notes", values.notes, 20, 1, 400),
    maxTokens: intFlag("max-tokens", values["max-tokens"], 48, 1, 2048),
    budget: values.budget === undefined ? "auto" : intFlag("budget", values.budget, 24, 1, 2048),
    device: choiceFlag("device", values.device, DEVICE_SPEEDS, "phone-npu"),
    sweep: values["no-sweep"] !== true,
    rttMs: intFlag("rtt-ms", values["rtt-ms"], 50, 0, 2000),
    bandwidthMbps: intFlag("bandwidth-mbps", values["bandwidth-mbps"], 100, 1, 100_000),
    codec: choiceFlag("codec", values.codec, ["proto", "msgpack"] as const, "proto"),
    log: values.json ? undefined : io.log,
  });
  if (values.json) {
    for (const r of run.rows)
      io.log(
        JSON.stringify({
          device: r.speed,
          transport: r.transport,
          run: r.mode,
          coldTtftMs: r.coldTtftMs,
          warmTtftMs: r.warmTtftMs,
          ...r.report,
          cloudTokenIds: undefined,
          deviceTokenIds: undefined,
        }),
      );
    return 0;
  }
  for (const line of [...preamble(run), "", ...mainTable(run)]) io.log(line);
  if (run.settings.length > 1) for (const line of ["", ...sweepTable(run)]) io.log(line);
  for (const line of ["", ...headline(run)]) io.log(line);
  io.log(`\nanswer: ${JSON.stringify(run.rows[0]!.report.text)}`);
  return 0;
};

/** Says so when the default prompt was shortened to fit the model's context. */
const shortened = (run: DemoRun) =>
  run.options.notes === "auto" && run.notes < DEFAULT_NOTES
    ? `, not ${DEFAULT_NOTES}: shortened to fit the model's context of ${run.model.contextSize} with the answer`
    : "";

/** What sets the numbers. */
function preamble(run: DemoRun): string[] {
  const o = run.options;
  const cpu = run.cpu;
  const budget = o.budget === "auto" ? "the planner's" : `${o.budget} (--budget)`;
  const lines = [
    "",
    `model (both peers): ${run.model.embedded ? "the embedded 0.2M-parameter model" : run.model.name}, ` +
      `${run.model.path} (${(run.model.bytes / 1e6).toFixed(1)} MB)`,
    `prompt: ${run.promptTokens} tokens (${run.notes} notes${shortened(run)}); answer: ${o.maxTokens} tokens; target TPOT 40 ms; ` +
      `cloud budget: ${budget}`,
    `network: emulated (transports/netem.ts), RTT ${o.rttMs} ms, ${o.bandwidthMbps} Mbit/s each way; ` +
      "TLS on every binding (wss, grpcs, https)",
    "TTFT: from the user's submit to the first text shown. cold = a new device's first request " +
      "(TCP + TLS + binding handshake + Hello/HelloAck inside); warm = the next request, another prompt of the " +
      "same length, on the open connection",
    `this CPU: ${(1000 / cpu.prefillMsPerToken).toFixed(0)} tok/s prefill, ${(1000 / cpu.decodeMsPerToken).toFixed(0)} ` +
      "tok/s decode on this model, one thread; the cloud runs on the same CPU, one thread",
  ];
  for (const s of run.settings)
    if (s.speed !== "none")
      lines.push(
        `device "${s.speed}": ${s.label}: ${s.prefillTokPerS.toFixed(0)} tok/s prefill, ` +
          `${s.decodeTokPerS.toFixed(1)} tok/s decode (published for a 1-2B model, engine/profiles.ts), reached by ` +
          `padding each local step on this CPU to ${s.emulate.prefillMsPerToken?.toFixed(2)} ms per prefill token ` +
          `and ${s.emulate.decodeMsPerToken?.toFixed(1)} ms per decoded token; measured: ${measuredRate(run, s)}`,
      );
  lines.push(...kvNote(run));
  return lines;
}

/** What the KV row's image is, against what the emulated model's would be: the row is optimistic by that much. */
function kvNote(run: DemoRun): string[] {
  const kb = (run.kvBytesPerToken * run.promptTokens) / 1024;
  const main = run.settings.find((s) => s.speed === run.options.device);
  const lines = [
    `KV: "P/D + KV" imports the cloud's KV image instead of prefilling: this model's, ${kb.toFixed(0)} KiB ` +
      "for this prompt; it crosses the emulated link, and its import costs what it costs on this CPU (not emulated)",
  ];
  if (main?.kvBytesPerToken) {
    const mb = (main.kvBytesPerToken * run.promptTokens) / 1e6;
    const s = (mb * 8) / run.options.bandwidthMbps;
    lines.push(
      `    the emulated ${main.speed} model's image would be ${mb.toFixed(0)} MB (${s.toFixed(1)} s at ` +
        `${run.options.bandwidthMbps} Mbit/s): that row is not what this device would see`,
    );
  }
  return lines;
}

/** The device-only run's prefill rate at a setting: what the emulation actually reached. */
function measuredRate(run: DemoRun, s: DemoRun["settings"][number]): string {
  const local = run.rows.find((r) => r.speed === s.speed && r.mode === "device only");
  const ms = local?.report.prefillMs.device;
  return ms ? `${((1000 * run.promptTokens) / ms).toFixed(0)} tok/s prefill` : "—";
}

const fmt = (ms: number | null) => (ms === null ? "—" : ms.toFixed(0));

function markdown(header: string[], cells: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.map(line)];
}

/** "N× lower" or "N× higher": `ms` against `base`, for prose. */
const times = (ms: number | null, base: number) =>
  ms === null ? "—" : ms <= base ? `${(base / ms).toFixed(1)}× lower` : `${(ms / base).toFixed(1)}× higher`;

/** "N× (M% lower)" of `ms` against `base`. */
const against = (ms: number | null, base: number) => {
  if (ms === null) return "—";
  const change =
    ms <= base ? `${((1 - ms / base) * 100).toFixed(0)}% lower` : `${((ms / base - 1) * 100).toFixed(0)}% higher`;
  return `${(base / ms).toFixed(1)}× (${change})`;
};

/** Every run at the main device speed, each against both baselines of the same run. */
function mainTable(run: DemoRun): string[] {
  const rows = run.rows.filter((r) => r.speed === run.options.device);
  const base = rows[0]!;
  const cloudOnly = rows.find((r) => r.mode === "cloud only");
  const header = ["run", "transport", "TTFT cold ms", "TTFT warm ms", "warm vs device-only", "warm vs cloud-only"];
  header.push("cloud decoded (vs cloud-only)", "takeover k", "TPOT p50 ms", "TPOT max ms", "stalls", "device prefill");
  header.push("same text");
  const cells = rows.map((r) => [
    r.mode,
    r.transport,
    fmt(r.coldTtftMs),
    fmt(r.warmTtftMs),
    r === base ? "baseline" : against(r.warmTtftMs, base.warmTtftMs),
    r === cloudOnly ? "baseline" : cloudOnly ? against(r.warmTtftMs, cloudOnly.warmTtftMs) : "—",
    decodedCell(r, cloudOnly),
    r.report.takeoverIndex === null ? "—" : String(r.report.takeoverIndex),
    r.report.tpotMs.p50.toFixed(1),
    r.report.tpotMs.max.toFixed(1),
    String(r.report.stalls),
    prefillCell(r),
    r.report.text === base.report.text ? "yes" : "NO",
  ]);
  return [`device: ${run.settings[0]!.label}`, "", ...markdown(header, cells)];
}

/** Tokens the cloud decoded for the warm request (End.usage), and how many times fewer than cloud-only's. */
function decodedCell(r: DemoRow, cloudOnly: DemoRow | undefined): string {
  if (r.mode === "device only") return "0";
  const n = r.report.cloudDecodedTokens;
  if (n === undefined) return "?";
  const all = cloudOnly?.report.cloudDecodedTokens;
  if (r === cloudOnly || all === undefined || n === 0) return String(n);
  return `${n} (${(all / n).toFixed(1)}× fewer)`;
}

function prefillCell(r: DemoRow): string {
  if (r.report.kvImported) return "KV imported";
  if (r.report.prefillMs.device === null) return "none";
  return `${r.report.prefillMs.device.toFixed(0)} ms`;
}

/** How the ratios move with the device's speed: P/D over WebSocket at each, against the same run's baselines. */
function sweepTable(run: DemoRun): string[] {
  const cloudOnly = run.rows.find((r) => r.mode === "cloud only");
  const header = ["device", "prefill tok/s", "device-only TTFT ms", "P/D TTFT cold ms", "P/D TTFT warm ms"];
  header.push("cold vs device-only", "warm vs device-only", "takeover k", "cloud decoded (vs cloud-only)");
  const cells = run.settings.map((s) => {
    const local = run.rows.find((r) => r.speed === s.speed && r.mode === "device only")!;
    const pd = run.rows.find((r) => r.speed === s.speed && r.mode === "P/D" && r.transport === "websocket")!;
    return [
      s.label,
      s.prefillTokPerS.toFixed(0),
      fmt(local.warmTtftMs),
      fmt(pd.coldTtftMs),
      fmt(pd.warmTtftMs),
      against(pd.coldTtftMs, local.warmTtftMs),
      against(pd.warmTtftMs, local.warmTtftMs),
      pd.report.takeoverIndex === null ? "—" : String(pd.report.takeoverIndex),
      decodedCell(pd, cloudOnly),
    ];
  });
  return [
    "the ratios are set by the device's speed: P/D over websocket at each one; cloud-only does not depend on it",
    "(device-only rows at these speeds stop at their first text)",
    "",
    ...markdown(header, cells),
  ];
}

/** The headline: warm P/D over WebSocket against both baselines, with what sets each number. */
function headline(run: DemoRun): string[] {
  const o = run.options;
  const at = run.rows.filter((r) => r.speed === o.device);
  const local = at.find((r) => r.mode === "device only")!;
  const pd = at.find((r) => r.mode === "P/D" && r.transport === "websocket")!;
  const cloudOnly = at.find((r) => r.mode === "cloud only")!;
  const setting = run.settings.find((s) => s.speed === o.device)!;
  const k = pd.report.takeoverIndex;
  return [
    `headline (${setting.label}; RTT ${o.rttMs} ms, ${o.bandwidthMbps} Mbit/s emulated; warm connection; ` +
      `${run.promptTokens}-token prompt, ${o.maxTokens}-token answer; one run, side by side):`,
    `- TTFT: P/D ${fmt(pd.warmTtftMs)} ms; device alone ${fmt(local.warmTtftMs)} ms (P/D ` +
      `${times(pd.warmTtftMs, local.warmTtftMs)}); cloud-only ${fmt(cloudOnly.warmTtftMs)} ms (P/D ` +
      `${times(pd.warmTtftMs, cloudOnly.warmTtftMs)}; both wait for the same cloud first token, so this ratio is ` +
      "one run's noise)",
    `- cloud decode: ${decodedCell(pd, cloudOnly)} tokens; cloud-only ${cloudOnly.report.cloudDecodedTokens ?? "?"}; ` +
      (k !== null && k < o.maxTokens
        ? `the device took over at token ${k}`
        : "the device did not take over: it could not catch up before the answer ended"),
  ];
}
