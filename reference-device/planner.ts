/**
 * The planner (paper §4; the spec leaves it to implementations): from the
 * measured network, cloud and device speeds and the prompt length, it
 * predicts each way of serving a request — KV transfer or recompute, each
 * refinement ratio — and picks the cheapest for the cloud that keeps the
 * display at the target pace without a stall. Pure and deterministic.
 *
 * The model, per candidate (all times in ms from the request's start):
 * - TTFT = RTT + cloud queue + P / cloud prefill rate + one cloud decode step.
 * - The display shows cloud token i at TTFT + i·I, I = max(target TPOT,
 *   cloud decode interval).
 * - The device's own context covers the prompt at `ready`: its own prefill
 *   (P / device prefill rate), or the refined prompt's, or the KV image's
 *   arrival (export + size / bandwidth + import), whichever is first. The
 *   refined prompt arrives with the first token; the device keeps the part
 *   of the prompt it prefilled by then and prefills only the kept tokens of
 *   the rest (a device that starts over on the refined prompt: `refine.
 *   keepsPrefilled` false).
 * - It then catches up over the cloud tokens shown meanwhile at its prefill
 *   rate: takeover k solves k = 1 + (ready + k/dp − TTFT) / I.
 * - The cloud budget covers k with a margin; a budget below k leaves a gap
 *   in the display (a stall), which the prediction reports as max TPOT.
 * - Cloud cost = the time a cloud sequence is held: prefill plus the tokens
 *   it decodes (plus the KV export).
 */
export interface PlanInput {
  /** Prompt tokens. */
  promptTokens: number;
  /** Tokens the answer will have (or its limit); bounds what the cloud decodes. */
  answerTokens: number;
  rttMs: number;
  /** Downlink bandwidth, megabits per second. */
  bandwidthMbps: number;
  cloud: { queueMs: number; prefillTokPerS: number; decodeTokPerS: number };
  device: { prefillTokPerS: number; decodeTokPerS: number };
  targetTpotMs: number;
  /** Limits on the cloud budget (the cloud's max_cloud_token_budget, for one). */
  budget?: { min?: number; max?: number };
  /** KV transfer possible (same model, cloud offers it); bytes per token of the image. */
  kv?: { allowed: boolean; bytesPerToken: number; exportMBps?: number; importMBps?: number };
  /**
   * Refinement possible; ratios below `minRatio` are not considered (answer
   * quality). `keepsPrefilled` (default true, the reference device): on the
   * refined prompt's arrival the device keeps the prompt prefix it prefilled
   * and prefills only the kept tokens after it; false: it starts over on the
   * whole refined prompt.
   */
  refine?: { allowed: boolean; minRatio?: number; keepsPrefilled?: boolean };
}

export interface Candidate {
  kv: boolean;
  /** Refinement ratio (1 = the whole prompt). */
  ratio: number;
  budget: number;
  takeoverIndex: number;
  ttftMs: number;
  /** When the device's context covers the prompt. */
  readyMs: number;
  displayIntervalMs: number;
  maxTpotMs: number;
  stall: boolean;
  /** Cloud sequence time for this request, ms. */
  cloudCostMs: number;
}

export interface Plan {
  /**
   * "local": the device alone answers first. "cloud": the device could not
   * catch up before the answer ends, so the cloud's budget is the whole
   * answer and nothing is handed over. "pd": the cloud starts, the device takes over.
   */
  mode: "pd" | "local" | "cloud";
  chosen: Candidate;
  candidates: Candidate[];
  /** The same request served by the cloud alone and by the device alone. */
  cloudOnly: { ttftMs: number; cloudCostMs: number };
  deviceOnly: { ttftMs: number; maxTpotMs: number };
  /** Display times (ms from start) of the first cloud tokens and at the handover. */
  pacing: { intervalMs: number; takeoverIndex: number; firstTokensMs: number[] };
  explanation: string[];
}

const REFINE_RATIOS = [1, 0.75, 0.5, 0.35, 0.25];

export function plan(i: PlanInput): Plan {
  validate(i);
  const t = timings(i);
  const candidates = enumerate(i, t);
  const { chosen, ok } = choose(candidates, t.T);
  const deviceOnly = { ttftMs: t.devPrefillMs + t.devStep, maxTpotMs: Math.max(t.T, t.devStep) };
  const cloudOnly = { ttftMs: t.ttft, cloudCostMs: t.cloudPrefillMs + t.N * t.cloudStep };
  const mode = deviceOnly.ttftMs <= chosen.ttftMs ? "local" : chosen.takeoverIndex >= t.N ? "cloud" : "pd";
  const firstTokensMs = Array.from({ length: Math.min(chosen.takeoverIndex + 1, 8) }, (_, k) =>
    round(chosen.ttftMs + k * t.I),
  );
  return {
    mode,
    chosen,
    candidates,
    cloudOnly,
    deviceOnly,
    pacing: { intervalMs: round(t.I), takeoverIndex: chosen.takeoverIndex, firstTokensMs },
    explanation: explain(i, t, { candidates, chosen, ok, cloudOnly, deviceOnly, mode }),
  };
}

/** What every candidate shares: the cloud's first token, the display pace, the device's speeds, the budget's bounds. */
interface Timings {
  /** Prompt tokens. */
  P: number;
  /** Target TPOT. */
  T: number;
  cloudStep: number;
  cloudPrefillMs: number;
  /** The cloud's first token, ms from the start. */
  ttft: number;
  /** The display interval: the target, or the cloud's decode step if slower. */
  I: number;
  devPrefillMs: number;
  devStep: number;
  bMin: number;
  bMax: number;
  /** Answer tokens. */
  N: number;
}

function timings(i: PlanInput): Timings {
  const P = i.promptTokens;
  const cloudStep = 1000 / i.cloud.decodeTokPerS;
  const cloudPrefillMs = (1000 * P) / i.cloud.prefillTokPerS;
  const bMin = Math.max(1, i.budget?.min ?? 1);
  return {
    P,
    T: i.targetTpotMs,
    cloudStep,
    cloudPrefillMs,
    ttft: i.rttMs + i.cloud.queueMs + cloudPrefillMs + cloudStep,
    I: Math.max(i.targetTpotMs, cloudStep),
    devPrefillMs: (1000 * P) / i.device.prefillTokPerS,
    devStep: 1000 / i.device.decodeTokPerS,
    bMin,
    bMax: Math.max(bMin, i.budget?.max ?? 256),
    N: Math.max(1, i.answerTokens),
  };
}

/** One candidate per way of serving: recompute at each allowed refinement ratio, and KV transfer if allowed. */
function enumerate(i: PlanInput, t: Timings): Candidate[] {
  const candidates: Candidate[] = [];
  const ratios = i.refine?.allowed ? REFINE_RATIOS.filter((r) => r >= (i.refine?.minRatio ?? 0.5)) : [1];
  const kvOptions = i.kv?.allowed && i.kv.bytesPerToken > 0 ? [false, true] : [false];
  for (const kv of kvOptions) {
    for (const ratio of kv ? [1] : ratios) {
      const { ready, kvExtraCost } = readyAt(i, t, kv ? i.kv : undefined, ratio);
      candidates.push(candidate({ ...t, kv, ratio, ready, prefillRate: i.device.prefillTokPerS, kvExtraCost }));
    }
  }
  return candidates;
}

/** When the device's context covers the prompt: a refined prompt arrives with the first token, a KV image after it. */
function readyAt(i: PlanInput, t: Timings, kv: PlanInput["kv"], ratio: number): { ready: number; kvExtraCost: number } {
  let ready = t.devPrefillMs;
  if (ratio < 1) ready = Math.min(ready, refinedReadyAt(t.ttft - t.cloudStep, t.devPrefillMs, ratio, i.refine));
  if (!kv) return { ready, kvExtraCost: 0 };
  const bytes = t.P * kv.bytesPerToken;
  const exportMs = bytes / ((kv.exportMBps ?? 1000) * 1000);
  const transferMs = (bytes * 8) / (i.bandwidthMbps * 1000) + i.rttMs / 2;
  const importMs = bytes / ((kv.importMBps ?? 1000) * 1000);
  return { ready: Math.min(ready, t.ttft + exportMs + transferMs + importMs), kvExtraCost: exportMs };
}

/**
 * When the device has prefilled a prompt refined to `ratio` that arrives at
 * `arrival`: what was left of its own prefill, shortened to the ratio (the
 * kept share of the rest taken as the ratio), or the whole refined prompt
 * from the start.
 */
export function refinedReadyAt(
  arrival: number,
  devPrefillMs: number,
  ratio: number,
  refine: PlanInput["refine"],
): number {
  const left = refine?.keepsPrefilled === false ? devPrefillMs : Math.max(0, devPrefillMs - arrival);
  return arrival + ratio * left;
}

/** The cheapest for the cloud among those that keep the target without a stall; if none does, the lowest max TPOT. */
function choose(candidates: Candidate[], T: number): { chosen: Candidate; ok: Candidate[] } {
  const ok = candidates.filter((c) => !c.stall && c.maxTpotMs <= T + 1e-9);
  const pool = ok.length > 0 ? ok : candidates;
  const chosen = [...pool].sort(
    (a, b) =>
      (ok.length > 0 ? a.cloudCostMs - b.cloudCostMs : a.maxTpotMs - b.maxTpotMs) ||
      b.ratio - a.ratio ||
      a.ttftMs - b.ttftMs,
  )[0]!;
  return { chosen, ok };
}

function explain(
  i: PlanInput,
  t: Timings,
  p: Pick<Plan, "candidates" | "chosen" | "cloudOnly" | "deviceOnly" | "mode"> & { ok: Candidate[] },
): string[] {
  const { chosen, deviceOnly } = p;
  const ttftParts = `RTT ${ms(i.rttMs)} + queue ${ms(i.cloud.queueMs)} + prefill ${ms(t.cloudPrefillMs)} + one decode step ${ms(t.cloudStep)}`;
  const paceLimit = t.I > t.T ? `, limited by the cloud's decode rate` : "";
  const slowDevice = t.devStep > t.T ? `, slower than the target: after the handover TPOT is ${ms(t.devStep)}` : "";
  const refined = chosen.ratio < 1 ? "; a refined prompt trades answer fidelity for it" : "";
  const lower = (100 * (1 - chosen.ttftMs / deviceOnly.ttftMs)).toFixed(0);
  return [
    `TTFT through the cloud ${ms(t.ttft)} (${ttftParts}); device alone ${ms(deviceOnly.ttftMs)}.`,
    `Display pace ${ms(t.I)} per token (target ${ms(t.T)}${paceLimit}); the device decodes at ${ms(t.devStep)} per token${slowDevice}.`,
    ...p.candidates.map((c) => describe(c, c === chosen, p.cloudOnly.cloudCostMs)),
    p.ok.length > 0
      ? `Chosen: the lowest cloud time among the ${p.ok.length} candidate(s) that keep TPOT at the target without a stall${refined}.`
      : `No candidate keeps the target without a stall; chosen: the lowest max TPOT.`,
    p.mode === "local"
      ? `The device alone reaches its first token first: serve locally.`
      : p.mode === "cloud"
        ? `The device cannot catch up before the answer's ${t.N} tokens end: the cloud serves the whole answer (no handover, no stall).`
        : `Cloud first token ${ms(chosen.ttftMs)} vs ${ms(deviceOnly.ttftMs)} alone (${lower}% lower).`,
  ];
}

/** One line per candidate; the chosen one is marked with an arrow. */
function describe(c: Candidate, chosen: boolean, cloudOnlyCostMs: number): string {
  const way = c.kv ? "KV transfer" : c.ratio < 1 ? `refine to ${c.ratio}` : "recompute";
  const stall = c.stall ? " (stall: budget below the takeover)" : "";
  const share = Math.round((100 * c.cloudCostMs) / cloudOnlyCostMs);
  return (
    `${chosen ? "→" : " "} ${way}: device ready at ${ms(c.readyMs)}, takeover at token ${c.takeoverIndex}, budget ${c.budget}, ` +
    `max TPOT ${ms(c.maxTpotMs)}${stall}, cloud time ${ms(c.cloudCostMs)} (${share}% of cloud-only's ${ms(cloudOnlyCostMs)})`
  );
}

function candidate(a: {
  kv: boolean;
  ratio: number;
  ttft: number;
  ready: number;
  I: number;
  T: number;
  devStep: number;
  prefillRate: number;
  cloudPrefillMs: number;
  cloudStep: number;
  bMin: number;
  bMax: number;
  N: number;
  kvExtraCost: number;
}): Candidate {
  const perToken = 1000 / a.prefillRate; // device ms to prefill one received token
  let k: number;
  if (a.ready <= a.ttft) k = 1;
  else if (perToken >= a.I)
    k = a.N; // never catches up with the display
  else k = Math.ceil((1 + (a.ready - a.ttft) / a.I) / (1 - perToken / a.I));
  k = Math.min(Math.max(1, k), a.N);
  const budget = Math.min(a.bMax, Math.max(a.bMin, Math.min(a.N, Math.ceil(k * 1.15) + 2)));
  const covered = Math.min(k, budget);
  let maxTpot = Math.max(a.I, a.devStep);
  let stall = false;
  if (budget < k) {
    // The display shows the last cloud token, then waits for the device to
    // cover the budget and decode its first token.
    const lastShown = a.ttft + (budget - 1) * a.I;
    const firstOwn = a.ready + budget * perToken + a.devStep;
    const gap = firstOwn - lastShown;
    if (gap > maxTpot) maxTpot = gap;
    stall = gap > 2 * a.T;
  }
  const decoded = Math.min(a.N, covered === a.N ? a.N : budget);
  return {
    kv: a.kv,
    ratio: a.ratio,
    budget,
    takeoverIndex: covered,
    ttftMs: round(a.ttft),
    readyMs: round(a.ready),
    displayIntervalMs: round(a.I),
    maxTpotMs: round(maxTpot),
    stall,
    cloudCostMs: round(a.cloudPrefillMs + decoded * a.cloudStep + a.kvExtraCost),
  };
}

function validate(i: PlanInput): void {
  const positive: [string, number][] = [
    ["promptTokens", i.promptTokens],
    ["answerTokens", i.answerTokens],
    ["bandwidthMbps", i.bandwidthMbps],
    ["cloud.prefillTokPerS", i.cloud.prefillTokPerS],
    ["cloud.decodeTokPerS", i.cloud.decodeTokPerS],
    ["device.prefillTokPerS", i.device.prefillTokPerS],
    ["device.decodeTokPerS", i.device.decodeTokPerS],
    ["targetTpotMs", i.targetTpotMs],
  ];
  for (const [name, v] of positive)
    if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`${name} must be a positive number, not ${v}`);
  for (const [name, v] of [
    ["rttMs", i.rttMs],
    ["cloud.queueMs", i.cloud.queueMs],
  ] as const)
    if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`${name} must be ≥ 0, not ${v}`);
}

const round = (x: number) => Math.round(x * 10) / 10;
const ms = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
