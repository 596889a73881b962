/**
 * The demo: generates the embedded model if it is missing, starts a
 * reference cloud on loopback with all three transports, and answers one
 * prompt with a device alone and then over each transport, the device
 * emulating a phone-class speed. `pdd demo` (cli/demo.ts) prints the table.
 */
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { startCloud } from "../reference-cloud/index.js";
import { PdDevice, type Report } from "../reference-device/index.js";

export interface DemoOptions {
  /** Notes in the prompt: its length. */
  notes: number;
  maxTokens: number;
  /** The cloud's token budget, or "auto" for the one the device's calibrated speed asks for. */
  budget: number | "auto";
  /** Extra ms per token the device spends in prefill and decode (a phone on this CPU). */
  deviceMsPerToken: number;
  codec: "proto" | "msgpack";
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface DemoRun {
  promptTokens: number;
  /** The budget the cloud was given. */
  budget: number;
  /** "device only" first: the baseline. */
  rows: { transport: string; report: Report }[];
}

export const demoPrompt = (notes: number) =>
  `${Array.from({ length: notes }, (_, i) => `Note ${i + 1}: the cloud prefills fast, the device decodes.`).join(" ")} ` +
  `Summarise the notes above in one sentence.`;

export async function runDemo(o: DemoOptions): Promise<DemoRun> {
  o.log?.("generating or loading the embedded model …");
  const modelPath = ensureDefaultModel("tiny");
  const cloud = await startCloud({
    model: modelPath,
    logLevel: "warn",
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
  const engine = await Engine.load({ modelPath, sequences: 4 });
  const prompt = demoPrompt(o.notes);
  const promptTokens = engine.tokenize(prompt).length;
  const emulate = { prefillMsPerToken: o.deviceMsPerToken, decodeMsPerToken: o.deviceMsPerToken };
  const rows: DemoRun["rows"] = [];
  let budget = 0;
  try {
    const local = await PdDevice.create({ engine, emulate });
    budget = o.budget === "auto" ? local.budgetFor(promptTokens, 40) : o.budget;
    rows.push({
      transport: "device only",
      report: await local.generate(prompt, { maxTokens: o.maxTokens, localOnly: true }),
    });
    const urls: [string, string][] = [
      ["websocket", cloud.urls.ws!],
      ["grpc", cloud.urls.grpc!],
      ["webtransport", cloud.urls.webtransport!],
    ];
    for (const [name, url] of urls) {
      const device = await PdDevice.create({
        engine,
        cloud: url,
        client: { ca: cloud.certificate.cert, codec: name === "grpc" ? "proto" : o.codec },
        emulate,
      });
      rows.push({
        transport: name,
        report: await device.generate(prompt, { maxTokens: o.maxTokens, cloudBudget: budget }),
      });
      await device.close();
    }
  } finally {
    await cloud.close({ drainSeconds: 1 });
    await engine.close();
  }
  return { promptTokens, budget, rows };
}
