/**
 * `pdd demo`: the README's main job (bench/demo.ts runs it): a cloud behind
 * the network emulator and a device, one long prompt over every binding,
 * printed next to the device-only and cloud-only baselines, with what sets
 * each number stated above the table.
 */
import { DEVICE_SPEEDS, runDemo as demo, type DemoRow, type DemoRun } from "../bench/index.js";
import { choiceFlag, intFlag, parseFlags, type Run } from "./kit.js";

export const runDemo: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
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
    notes: intFlag("notes", values.notes, 40, 1, 400),
    maxTokens: intFlag("max-tokens", values["max-tokens"], 160, 1, 2048),
    budget: values.budget === undefined ? "auto" : intFlag("budget", values.budget, 24, 1, 2048),
    device: choiceFlag("device", values.device, DEVICE_SPEEDS, "phone"),
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
  io.log(`\nanswer: ${JSON.stringify(run.rows[0]!.report.text)}`);
  return 0;
};

/** What sets the numbers. */
function preamble(run: DemoRun): string[] {
  const o = run.options;
  const cpu = run.cpu;
  const budget = o.budget === "auto" ? "the planner's" : `${o.budget} (--budget)`;
  const lines = [
    "",
    `prompt: ${run.promptTokens} tokens; answer: ${o.maxTokens} tokens; target TPOT 40 ms; cloud budget: ${budget}`,
    `network: emulated (transports/netem.ts), RTT ${o.rttMs} ms, ${o.bandwidthMbps} Mbit/s each way; ` +
      "TLS on every binding (wss, grpcs, https)",
    "TTFT: from the user's submit to the first text shown. cold = a new device's first request " +
      "(TCP + TLS + binding handshake + Hello/HelloAck inside); warm = the next request, another prompt of the " +
      "same length, on the open connection",
    `this CPU: ${(1000 / cpu.prefillMsPerToken).toFixed(0)} tok/s prefill, ${(1000 / cpu.decodeMsPerToken).toFixed(0)} ` +
      "tok/s decode on the embedded 0.2M-parameter model; the cloud runs on the same CPU",
  ];
  for (const s of run.settings)
    if (s.speed !== "none")
      lines.push(
        `device "${s.speed}": ${s.label}: ${s.prefillTokPerS.toFixed(0)} tok/s prefill, ` +
          `${s.decodeTokPerS.toFixed(1)} tok/s decode (published for a 1-2B model, engine/profiles.ts), reached by ` +
          `sleeping ${s.emulate.prefillMsPerToken.toFixed(2)} + ${s.emulate.decodeMsPerToken.toFixed(2)} ms per ` +
          "prefill + decode token on this CPU",
      );
  lines.push(
    'KV: "P/D + KV" imports the cloud\'s KV image instead of prefilling; the image crosses the emulated link, ' +
      "its import costs what it costs on this CPU (no emulated time)",
  );
  return lines;
}

const fmt = (ms: number | null) => (ms === null ? "—" : ms.toFixed(0));

function markdown(header: string[], cells: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.map(line)];
}

/** "N× (M% lower)" of `ms` against `base`. */
const against = (ms: number | null, base: number) => {
  if (ms === null) return "—";
  const change =
    ms <= base ? `${((1 - ms / base) * 100).toFixed(0)}% lower` : `${((ms / base - 1) * 100).toFixed(0)}% higher`;
  return `${(base / ms).toFixed(1)}× (${change})`;
};

/** Every run at the main device speed. */
function mainTable(run: DemoRun): string[] {
  const rows = run.rows.filter((r) => r.speed === run.options.device);
  const base = rows[0]!;
  const header = ["run", "transport", "TTFT cold ms", "TTFT warm ms", "warm vs device-only", "TPOT p50 ms"];
  header.push("TPOT max ms", "stalls", "cloud tokens", "takeover k", "device prefill", "same text");
  const cells = rows.map((r) => [
    r.mode,
    r.transport,
    fmt(r.coldTtftMs),
    fmt(r.warmTtftMs),
    r === base ? "baseline" : against(r.warmTtftMs, base.warmTtftMs),
    r.report.tpotMs.p50.toFixed(1),
    r.report.tpotMs.max.toFixed(1),
    String(r.report.stalls),
    String(r.report.cloudTokens),
    r.report.takeoverIndex === null ? "—" : String(r.report.takeoverIndex),
    prefillCell(r),
    r.report.text === base.report.text ? "yes" : "NO",
  ]);
  return [`device: ${run.settings[0]!.label}`, "", ...markdown(header, cells)];
}

function prefillCell(r: DemoRow): string {
  if (r.report.kvImported) return "KV imported";
  if (r.report.prefillMs.device === null) return "none";
  return `${r.report.prefillMs.device.toFixed(0)} ms`;
}

/** How the TTFT ratio moves with the device's speed: device-only against P/D over WebSocket. */
function sweepTable(run: DemoRun): string[] {
  const header = ["device", "prefill tok/s", "device-only TTFT ms", "P/D TTFT cold ms", "P/D TTFT warm ms"];
  header.push("cold vs device-only", "warm vs device-only");
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
    ];
  });
  return ["the ratio is set by the device's speed: P/D over websocket at each one", "", ...markdown(header, cells)];
}
