/**
 * `npm run bench:refine-quality`: what prompt refinement costs in answer
 * fidelity, measured the one way this machine allows (no trained model, no
 * network): on the generated llama models, through llama.cpp, how often the
 * device's answer after the takeover is the one it gives on the whole prompt.
 *
 * Per prompt: the cloud model (small) prefills it, computing the surprisal
 * the refinement uses (spec §8.3, the reference cloud's surprisalDrop with
 * the reference device's parameters), and decodes the K tokens shown before
 * the takeover. The device model (tiny) then decodes N tokens greedily after
 * those K, from four contexts:
 * - the whole prompt (the reference answer);
 * - the refined prompt alone (a device that starts over on it);
 * - the first PREFIX_SHARE of the prompt, then the kept tokens after it (the
 *   reference device, which keeps what it prefilled before the refined
 *   prompt came: about a fifth of a median conversation prompt on the NPU);
 * - as many tokens dropped at random (same t0 and tail kept): whether the
 *   surprisal's choice matters on this model.
 * Two controls bound what the agreement can show: another prompt altogether
 * (how much the answer depends on the prompt at all), and the whole prompt
 * again (1.00 unless decoding is not deterministic).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createModel, Engine, ensureDefaultModel, PRESETS } from "../engine/index.js";
import { surprisalDrop } from "../reference-cloud/index.js";
import { prng } from "../shared/index.js";

const K = 16;
const N = 32;
const PREFIX_SHARE = 0.2;
const RATIOS = [0.75, 0.5, 0.35, 0.25];
/** What the reference device asks for (reference-device/prefill-request.ts). */
const PARAMS = { minKeepTokens: 4, keepTailTokens: 8 };
const WORDS = (
  "the of and to in is that for it as was with be by on not he this are or his from at which but have an they " +
  "you were her she there been one all we their has would when if so no will more can said who out up what about " +
  "river stone market winter engine letter garden number window doctor silver answer morning island station paper"
).split(" ");

/** A prompt of about `n` words drawn from WORDS, in sentences; deterministic for `seed`. */
function promptText(seed: number, n: number): string {
  const rand = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)]! + (rand() < 0.08 ? "." : ""));
  return `${out.join(" ")}.`;
}

const PROMPTS = [
  [11, 120],
  [12, 200],
  [13, 300],
  [14, 400],
  [15, 550],
  [16, 700],
  [17, 250],
  [18, 450],
].map(([seed, n]) => promptText(seed!, n!));

async function greedy(engine: Engine, context: number[], n: number): Promise<number[]> {
  const slot = await engine.acquire();
  try {
    await slot.prefill(context);
    const out: number[] = [];
    for await (const t of slot.generate({}, n)) out.push(t);
    return out;
  } finally {
    await slot.release();
  }
}

/** The cloud's surprisal of each prompt token and its first K answer tokens. */
async function cloudSide(cloud: Engine, tokens: number[]): Promise<{ surprisal: Float64Array; shown: number[] }> {
  const slot = await cloud.acquire();
  try {
    const { surprisal } = await slot.prefill(tokens, { surprisal: true });
    const shown: number[] = [];
    for await (const t of slot.generate({}, K)) shown.push(t);
    return { surprisal: surprisal!, shown };
  } finally {
    await slot.release();
  }
}

/** The kept indices' tokens, and `prefix` tokens of the prompt followed by the kept ones after it. */
function contexts(tokens: number[], kept: { start: number; end: number }[], prefix: number) {
  const refined = kept.flatMap((s) => tokens.slice(s.start, s.end));
  const rest = kept.flatMap((s) => tokens.slice(Math.max(s.start, prefix), Math.max(s.end, prefix)));
  return { refined, keepsPrefix: [...tokens.slice(0, prefix), ...rest] };
}

/** As many tokens as `keptCount`, kept at random apart from t0 and the tail, in order. */
function randomDrop(tokens: number[], keptCount: number, seed: number): number[] {
  const n = tokens.length;
  const fixed = new Set([0, ...Array.from({ length: Math.min(n, PARAMS.keepTailTokens) }, (_, i) => n - 1 - i)]);
  const rand = prng(seed);
  const others = [...Array(n).keys()].filter((i) => !fixed.has(i)).sort(() => rand() - 0.5);
  const keep = new Set([...fixed, ...others.slice(0, Math.max(0, keptCount - fixed.size))]);
  return tokens.filter((_, i) => keep.has(i));
}

interface Tally {
  first: number;
  all: number;
  prefix: number;
  n: number;
}
const tally = (): Tally => ({ first: 0, all: 0, prefix: 0, n: 0 });
function score(t: Tally, reference: number[], answer: number[]): void {
  let same = 0;
  while (same < N && reference[same] === answer[same]) same++;
  t.n++;
  t.first += same > 0 ? 1 : 0;
  t.all += same === N ? 1 : 0;
  t.prefix += same;
}
const cell = (t: Tally) => `${t.first}/${t.n} / ${(t.prefix / t.n).toFixed(1)}`;

/** Each prompt's length in tokens (vocabulary "a", all the models here). */
const promptTokens: number[] = [];

/** One model pair and takeover index: the tallies of every context. */
async function measure(cloudPath: string, devicePath: string, k: number): Promise<Map<string, Tally>> {
  const cloud = await Engine.load({ modelPath: cloudPath, threads: 1 });
  const device = devicePath === cloudPath ? cloud : await Engine.load({ modelPath: devicePath, threads: 1 });
  const rows = new Map<string, Tally>();
  const row = (name: string) => rows.get(name) ?? rows.set(name, tally()).get(name)!;
  for (const [p, text] of PROMPTS.entries()) {
    const tokens = cloud.tokenize(text);
    promptTokens[p] = tokens.length;
    const { surprisal, shown: all } = await cloudSide(cloud, tokens);
    const shown = all.slice(0, k);
    const answer = (context: number[]) => greedy(device, [...context, ...shown], N);
    const reference = await answer(tokens);
    score(row("control: the whole prompt again"), reference, await answer(tokens));
    score(
      row("control: another prompt altogether"),
      reference,
      await answer(cloud.tokenize(PROMPTS[(p + 1) % PROMPTS.length]!)),
    );
    for (const ratio of RATIOS) {
      const ref = surprisalDrop(tokens, surprisal, { targetRatio: ratio, ...PARAMS });
      const c = contexts(tokens, ref.kept, Math.floor(PREFIX_SHARE * tokens.length));
      score(row(`${ratio}: refined prompt alone`), reference, await answer(c.refined));
      score(row(`${ratio}: prefix kept, then refined`), reference, await answer(c.keepsPrefix));
      score(
        row(`${ratio}: random drop, same count`),
        reference,
        await answer(randomDrop(tokens, ref.keptTokens, 1000 + p)),
      );
    }
  }
  await cloud.close();
  if (device !== cloud) await device.close();
  return rows;
}

async function main(): Promise<void> {
  // The skeleton decides most next tokens of the presets; without it, only the random weights and the context do.
  const noSkeleton = join(mkdtempSync(join(tmpdir(), "pdd-refine-")), "no-skeleton.gguf");
  createModel(noSkeleton, { ...PRESETS.tiny, chatTemplate: undefined, skeleton: 0, mix: 2, seed: 7 });
  const settings: [string, string, string, number][] = [
    ["presets, K 16", ensureDefaultModel("small"), ensureDefaultModel("tiny"), K],
    ["presets, K 0", ensureDefaultModel("small"), ensureDefaultModel("tiny"), 0],
    ["no skeleton, K 16", noSkeleton, noSkeleton, K],
    ["no skeleton, K 0", noSkeleton, noSkeleton, 0],
  ];
  const results: Map<string, Tally>[] = [];
  for (const [, cloud, device, k] of settings) results.push(await measure(cloud, device, k));
  rmSync(dirname(noSkeleton), { recursive: true, force: true });
  console.log(
    `Refinement's fidelity on generated models, through llama.cpp, greedy. ${PROMPTS.length} prompts of ` +
      `${Math.min(...promptTokens)}-${Math.max(...promptTokens)} tokens. "presets": the cloud model small computes the surprisal and the K tokens shown before the ` +
      `takeover, the device model tiny answers; "no skeleton": tiny's shape without the sentence skeleton (mix 2), ` +
      `as both cloud and device. Each cell: the device's first own token agrees with its answer on the whole ` +
      `prompt / mean leading tokens of ${N} that agree. Prefix kept: the first ${PREFIX_SHARE * 100}% of the prompt.\n`,
  );
  console.log(`| context (ratio: how refined) | ${settings.map((x) => x[0]).join(" | ")} |`);
  console.log(`|---|${settings.map(() => "---|").join("")}`);
  for (const name of results[0]!.keys())
    console.log(`| ${name} | ${results.map((r) => cell(r.get(name)!)).join(" | ")} |`);
}

await main();
