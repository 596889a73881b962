/** `pdd model create`: writes a generated test model (the embedded default is the tiny preset). */
import { choiceFlag, parseFlags, type Run } from "./kit.js";
import { createModel, defaultModelPath, parameterCount, PRESETS, type PresetName } from "../engine/index.js";

export const MODEL_CREATE_FLAGS = { preset: { type: "string" }, out: { type: "string" } } as const;

export const runModelCreate: Run = async (argv, io) => {
  const { values } = parseFlags(argv, MODEL_CREATE_FLAGS);
  const preset = choiceFlag("preset", values.preset, Object.keys(PRESETS) as PresetName[], "tiny");
  const out = values.out ?? defaultModelPath(preset);
  const shape = PRESETS[preset];
  const params = parameterCount(shape);
  const big = params > 10_000_000;
  const t0 = Date.now();
  createModel(out, shape, (f) => {
    if (!big) return;
    const width = 30;
    const full = Math.round(f * width);
    io.progress(`\r[${"#".repeat(full)}${".".repeat(width - full)}] ${(f * 100).toFixed(0)}%`);
  });
  if (big) io.progress("\n");
  io.log(JSON.stringify({ path: out, preset, parameters: params, ms: Date.now() - t0 }));
  return 0;
};
