/** `pdd model create`: writes a generated test model (the embedded default is the tiny preset). */
import { choiceFlag, parseFlags, type Command } from "./kit.js";
import { createModel, parameterCount, PRESETS, type PresetName } from "../engine/model-create.js";
import { defaultModelPath } from "../engine/default-model.js";

export const modelCommand: Command = {
  name: "model create",
  summary: "generate a deterministic llama GGUF test model (tiny, small, tiny-b, bench, spec)",
  usage: "pdd model create [--preset tiny|small|tiny-b|bench|spec] [--out PATH]",
  async run(argv) {
    const { values } = parseFlags(argv, { preset: { type: "string" }, out: { type: "string" } });
    const preset = choiceFlag("preset", values.preset, Object.keys(PRESETS) as PresetName[], "tiny");
    const out = values.out ?? defaultModelPath(preset);
    const shape = PRESETS[preset];
    const params = parameterCount(shape);
    const big = params > 10_000_000;
    const t0 = Date.now();
    createModel(out, shape, (f) => {
      if (!big || !process.stderr.isTTY) return;
      const width = 30;
      const full = Math.round(f * width);
      process.stderr.write(`\r[${"#".repeat(full)}${".".repeat(width - full)}] ${(f * 100).toFixed(0)}%`);
    });
    if (big && process.stderr.isTTY) process.stderr.write("\n");
    console.log(JSON.stringify({ path: out, preset, parameters: params, ms: Date.now() - t0 }));
    return 0;
  },
};
