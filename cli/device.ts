/** `pdd device`: answers one prompt with the P/D-Device method (or alone with --local-only). */
import { CLOUD_FLAGS, clientOptions, emulation } from "./device-flags.js";
import { intFlag, numberFlag, parseFlags, readFileFlag, UsageError, type Run } from "./kit.js";
import { PdDevice } from "../reference-device/index.js";

export const DEVICE_FLAGS = {
  ...CLOUD_FLAGS,
  prompt: { type: "string" },
  "prompt-file": { type: "string" },
  model: { type: "string" },
  "max-tokens": { type: "string" },
  budget: { type: "string" },
  "tpot-ms": { type: "string" },
  "no-kv": { type: "boolean" },
  refine: { type: "string" },
  "refine-min": { type: "string" },
  "local-only": { type: "boolean" },
  "no-fallback": { type: "boolean" },
  threads: { type: "string" },
  json: { type: "boolean" },
} as const;

export const runDevice: Run = async (argv, io) => {
  const { values } = parseFlags(argv, DEVICE_FLAGS);
  const prompt = readFileFlag("prompt-file", values["prompt-file"]) ?? values.prompt;
  if (prompt === undefined || prompt.length === 0) throw new UsageError("give --prompt TEXT or --prompt-file FILE");
  if (!values.cloud && !values["local-only"])
    throw new UsageError("give --cloud URL, or --local-only for the device alone");
  if (values["local-only"] && values["no-fallback"])
    throw new UsageError("--no-fallback needs a cloud; --local-only runs without one");
  const refine = values.refine === undefined ? undefined : Number(values.refine);
  if (refine !== undefined && !(refine > 0 && refine <= 1)) throw new UsageError("--refine must be a ratio in (0, 1]");
  if (refine !== undefined && values["refine-min"] !== undefined)
    throw new UsageError("--refine fixes the ratio; --refine-min lets the planner choose one: give one of them");
  const refineMin = numberFlag("refine-min", values["refine-min"], 1, 0, 1, true);
  const client = clientOptions(values);
  const generate = {
    maxTokens: intFlag("max-tokens", values["max-tokens"], 64, 1, 1 << 20),
    cloudBudget: values.budget ? intFlag("budget", values.budget, 32, 1, 1 << 20) : undefined,
    targetTpotMs: values["tpot-ms"] ? intFlag("tpot-ms", values["tpot-ms"], 40, 0, 60_000) : undefined,
    localOnly: values["local-only"],
    onText: values.json ? undefined : (t: string) => io.write(t),
  };
  const device = await PdDevice.create({
    modelPath: values.model,
    threads: values.threads ? intFlag("threads", values.threads, 1, 1, 256) : undefined,
    cloud: values["local-only"] ? undefined : values.cloud,
    client,
    useKv: !values["no-kv"],
    refineRatio: refine,
    refineMinRatio: refineMin,
    emulate: emulation(values),
    fallback: !values["no-fallback"],
  });
  try {
    const report = await device.generate(prompt, generate);
    if (values.json) {
      const { cloudTokenIds: _c, deviceTokenIds: _d, ...rest } = report;
      io.log(JSON.stringify(rest));
    } else {
      io.write("\n");
      // Never silent: a run that did not (fully) use the cloud says why (issue 16).
      if (report.fallbackReason) io.error(`pdd device: answered on the device alone, ${report.fallbackReason}`);
    }
    // A local failure after the cloud's part was done is not a fallback, but it is not silent either.
    if (report.recovered && !report.fallbackReason)
      io.error(`pdd device: the device's model failed and the answer was recomputed: ${report.recovered}`);
    if (report.fallbackReason && values["no-fallback"]) {
      if (values.json) io.error(`pdd device: the cloud failed mid-answer, ${report.fallbackReason}`);
      return 1;
    }
    return 0;
  } finally {
    await device.close();
  }
};
