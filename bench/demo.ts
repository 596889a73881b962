/**
 * `pdd demo`: the README's main job. Generates the embedded model if it is
 * missing, starts a reference cloud on loopback with all three transports,
 * answers prompts over each transport with a device emulating a phone-class
 * prefill speed, and prints what happened next to the device-only baseline.
 */
import { choiceFlag, intFlag, parseFlags, type Command } from "../cli/kit.js";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice } from "../reference-device/device.js";
import type { Report } from "../reference-device/run.js";

const PROMPT = (n: number) =>
  `${Array.from({ length: n }, (_, i) => `Note ${i + 1}: the cloud prefills fast, the device decodes.`).join(" ")} Summarise the notes above in one sentence.`;

export const demoCommand: Command = {
  name: "demo",
  summary: "start a cloud and a device on loopback and answer prompts over every transport",
  usage:
    "pdd demo [--notes N] [--max-tokens N] [--budget N] [--device-ms-per-token N] [--codec proto|msgpack] [--json]",
  async run(argv) {
    const { values } = parseFlags(argv, {
      notes: { type: "string" },
      "max-tokens": { type: "string" },
      budget: { type: "string" },
      "device-ms-per-token": { type: "string" },
      codec: { type: "string" },
      json: { type: "boolean" },
    });
    const notes = intFlag("notes", values.notes, 40, 1, 400);
    const maxTokens = intFlag("max-tokens", values["max-tokens"], 160, 1, 2048);
    const budget = values.budget === undefined ? ("auto" as const) : intFlag("budget", values.budget, 24, 1, 2048);
    const slow = intFlag("device-ms-per-token", values["device-ms-per-token"], 2, 0, 1000);
    const codec = choiceFlag("codec", values.codec, ["proto", "msgpack"] as const, "proto");
    const log = (s: string) => (values.json ? undefined : console.log(s));

    log("generating or loading the embedded model …");
    const modelPath = ensureDefaultModel("tiny");
    const cloud = await startCloud({
      model: modelPath,
      logLevel: "warn",
      listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
    });
    const engine = await Engine.load({ modelPath, sequences: 4 });
    const prompt = PROMPT(notes);
    const promptTokens = engine.tokenize(prompt).length;
    const emulate = { prefillMsPerToken: slow, decodeMsPerToken: slow };
    const rows: { transport: string; report: Report }[] = [];
    let plannedBudget = 0;
    try {
      const local = await PdDevice.create({ engine, emulate });
      const planned = budget === "auto" ? local.budgetFor(promptTokens, 40) : budget;
      plannedBudget = planned;
      rows.push({ transport: "device only", report: await local.generate(prompt, { maxTokens, localOnly: true }) });
      const urls: [string, string][] = [
        ["websocket", cloud.urls.ws!],
        ["grpc", cloud.urls.grpc!],
        ["webtransport", cloud.urls.webtransport!],
      ];
      for (const [name, url] of urls) {
        const device = await PdDevice.create({
          engine,
          cloud: url,
          client: { ca: cloud.certificate.cert, codec: name === "grpc" ? "proto" : codec },
          emulate,
        });
        rows.push({ transport: name, report: await device.generate(prompt, { maxTokens, cloudBudget: planned }) });
        await device.close();
      }
    } finally {
      await cloud.close({ drainSeconds: 1 });
      await engine.close();
    }
    if (values.json) {
      for (const r of rows)
        console.log(
          JSON.stringify({ transport: r.transport, ...r.report, cloudTokenIds: undefined, deviceTokenIds: undefined }),
        );
      return 0;
    }
    const base = rows[0]!.report;
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
    const table = rows.map(({ transport, report: r }) => [
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
    table[0]![3] = "baseline";
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
    const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
    console.log(
      `\nprompt: ${promptTokens} tokens; answer: ${maxTokens} tokens; cloud budget ${plannedBudget} (${budget === "auto" ? "sized to the device's calibrated speed" : "--budget"}); device emulates ${slow} ms per token\n`,
    );
    console.log(line(header));
    console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
    for (const r of table) console.log(line(r));
    console.log(`\nanswer: ${JSON.stringify(rows[1]!.report.text)}`);
    return 0;
  },
};
