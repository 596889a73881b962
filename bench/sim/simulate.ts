/**
 * A deterministic, token-level simulation of serving a trace: one cloud with
 * a fixed number of concurrent sequences (FIFO), devices with a timing
 * profile, a network with an RTT and a bandwidth. Each request's display is
 * driven by the reference device's own SpeedController and its budget and
 * path by the reference planner, so the simulation measures those, not a
 * model of them. Engines are timing profiles, not llama.cpp.
 */
import { prng } from "../../shared/index.js";
import { plan, refinedReadyAt, SpeedController, type PlanInput } from "../../reference-device/index.js";
import { NO_BATCHING, slowdown, type BatchingModel } from "./batching.js";
import type { Profile } from "./profiles.js";
import type { TraceRequest } from "./trace.js";

export type Mode =
  | { kind: "device-only" }
  | { kind: "cloud-only" }
  | { kind: "pd"; budget: "planner" | number; controller: boolean };

/** What the simulation needs of a profile. */
export type Rates = Pick<Profile, "name" | "source" | "prefillTokPerS" | "decodeTokPerS">;

export interface SimConfig {
  rttMs: number;
  bandwidthMbps: number;
  cloud: Rates;
  device: Rates;
  /** Concurrent sequences of the cloud. */
  capacity: number;
  targetTpotMs: number;
  /** Multiplies inter-arrival times (0.5 = twice the load). */
  timeScale: number;
  /** Refinement ratios the planner may use (its quality floor); 1 = none. */
  minRefineRatio: number;
  /**
   * The device keeps the prompt prefix it prefilled when the refined prompt
   * comes (the reference device, default true); false: it starts over on
   * the refined prompt (the reference device before issue 18).
   */
  refineKeepsPrefilled?: boolean;
  /** ±fraction of RTT jitter per request, from `seed`. */
  jitter: number;
  seed: number;
  /**
   * The reference cloud's decodePace: it sends token i no earlier than
   * i·target/pace after the first (0, the default: as fast as it decodes).
   */
  cloudPace?: number;
  /**
   * How a cloud sequence's decode slows with the batch (batching.ts); each
   * request decodes at the rate of the batch it joins (the sequences busy
   * when it is admitted, itself included) for its whole life. Default: none.
   */
  batching?: BatchingModel;
  /** The cloud's max_cloud_token_budget: the most a P/D request may ask. Default 256, the reference cloud's. */
  maxCloudBudget?: number;
}

export interface RequestResult {
  ttftMs: number;
  /** Gaps between consecutive displayed tokens, ms. */
  gaps: number[];
  /** Cloud sequence time, ms. */
  cloudMs: number;
  cloudTokens: number;
  takeover: number | undefined;
}

export function simulate(
  trace: TraceRequest[],
  mode: Mode,
  c: SimConfig,
  onProgress?: (done: number) => void,
): RequestResult[] {
  const free = new Array<number>(c.capacity).fill(0); // when each cloud sequence is next free
  const rand = prng(c.seed);
  const out: RequestResult[] = [];
  for (const [n, r] of trace.entries()) {
    const rtt = c.rttMs * (1 + c.jitter * (2 * rand() - 1));
    out.push(mode.kind === "device-only" ? deviceOnly(r, c) : throughCloud(r, rtt, free, mode, c));
    if (onProgress && n % 500 === 0) onProgress(n);
  }
  return out;
}

function deviceOnly(r: TraceRequest, c: SimConfig): RequestResult {
  const A = r.atMs * c.timeScale;
  const devStep = 1000 / c.device.decodeTokPerS;
  const devPer = 1000 / c.device.prefillTokPerS;
  const avail = Array.from({ length: r.answerTokens }, (_, i) => A + r.promptTokens * devPer + (i + 1) * devStep);
  const s = { k: 0, B: 0, received: [], localEta: () => undefined, devStep };
  return display(A, avail, s, c.targetTpotMs, true, 0, 0, undefined);
}

/** A cloud-only or P/D request: the cloud (FIFO over `capacity` sequences) streams, the device may take over. */
function throughCloud(
  r: TraceRequest,
  rtt: number,
  free: number[],
  mode: Exclude<Mode, { kind: "device-only" }>,
  c: SimConfig,
): RequestResult {
  const A = r.atMs * c.timeScale;
  const N = r.answerTokens;
  const devStep = 1000 / c.device.decodeTokPerS;
  const atCloud = A + rtt / 2;
  let slot = 0;
  for (let s = 1; s < free.length; s++) if (free[s]! < free[slot]!) slot = s;
  const start = Math.max(atCloud, free[slot]!);
  const batch = 1 + free.filter((f, s) => s !== slot && f > start).length;
  const cloudStep = (1000 / c.cloud.decodeTokPerS) * slowdown(c.batching ?? NO_BATCHING, batch);
  const { B, ratio } = mode.kind === "pd" ? pdBudget(r, rtt, start - atCloud, cloudStep, mode, c) : { B: N, ratio: 1 };
  // Cloud token i leaves when it is decoded (and, with a pace, when it is due).
  const prefillMs = (1000 * r.promptTokens) / c.cloud.prefillTokPerS;
  const pace = c.cloudPace ?? 0;
  const sentAt = (i: number) =>
    Math.max(
      start + prefillMs + (i + 1) * cloudStep,
      pace > 0 ? start + prefillMs + cloudStep + (i * c.targetTpotMs) / pace : 0,
    );
  const received = Array.from({ length: B }, (_, i) => sentAt(i) + rtt / 2);
  if (mode.kind === "cloud-only") {
    free[slot] = sentAt(N - 1);
    const s = { k: N, B: N, received, localEta: () => undefined, devStep };
    const res = display(A, received, s, c.targetTpotMs, true, 0, 0, undefined);
    return { ...res, cloudMs: sentAt(N - 1) - start, cloudTokens: N, takeover: undefined };
  }
  // The reference cloud sends the refined prompt as its prefill ends, before the first token's decode step.
  const refinedAt = start + prefillMs + rtt / 2;
  const { k, takeoverAt } = catchUp(r, A, received, { ratio, at: refinedAt }, c);
  // The cloud stops at the takeover (or its budget), then frees the sequence.
  const cloudTokens = Math.min(B, Math.max(k, received.filter((x) => x - rtt / 2 <= takeoverAt + rtt / 2).length));
  const cloudMs = sentAt(Math.max(0, cloudTokens - 1)) - start;
  free[slot] = start + cloudMs;
  const avail = [...received.slice(0, k), ...Array.from({ length: N - k }, (_, j) => takeoverAt + (j + 1) * devStep)];
  // When the cloud's tokens are the whole answer, no handover is coming: nothing to stretch for.
  const handover = k < N;
  const localEta = (now: number) => (handover && now < takeoverAt + devStep ? takeoverAt + devStep - now : undefined);
  const s = { k, B, received, localEta, devStep };
  return display(A, avail, s, c.targetTpotMs, mode.controller, cloudMs, cloudTokens, k);
}

/** The P/D cloud budget (the planner's, or fixed) and the refinement ratio. */
function pdBudget(
  r: TraceRequest,
  rtt: number,
  queueMs: number,
  cloudStep: number,
  mode: Extract<Mode, { kind: "pd" }>,
  c: SimConfig,
): { B: number; ratio: number } {
  const N = r.answerTokens;
  if (mode.budget !== "planner") return { B: Math.min(N, mode.budget), ratio: 1 };
  const input: PlanInput = {
    promptTokens: r.promptTokens,
    answerTokens: N,
    rttMs: rtt,
    bandwidthMbps: c.bandwidthMbps,
    cloud: { queueMs, prefillTokPerS: c.cloud.prefillTokPerS, decodeTokPerS: 1000 / cloudStep },
    device: { prefillTokPerS: c.device.prefillTokPerS, decodeTokPerS: c.device.decodeTokPerS },
    targetTpotMs: c.targetTpotMs,
    budget: { min: 1, max: c.maxCloudBudget ?? 256 },
    refine: { allowed: c.minRefineRatio < 1, minRatio: c.minRefineRatio, keepsPrefilled: c.refineKeepsPrefilled },
  };
  const p = plan(input);
  return { B: Math.min(N, p.chosen.budget), ratio: p.chosen.ratio };
}

/**
 * The device (reference-device/local-pipeline.ts): its own prefill (or, from
 * the refined prompt's arrival, the kept tokens of what is left of it), then catch-up over the
 * cloud tokens received up to a lead ahead of the display, then takeover at
 * token k. Short of the lead it waits for the cloud's next token when the
 * device's own first token would miss the display's next slot and the
 * cloud's comes sooner. The display is taken at the target pace here, not
 * stretched, and the device's estimate of the cloud's next arrival is exact.
 */
function catchUp(
  r: TraceRequest,
  A: number,
  received: number[],
  refined: { ratio: number; at: number },
  c: SimConfig,
): { k: number; takeoverAt: number } {
  const devPer = 1000 / c.device.prefillTokPerS;
  const devStep = 1000 / c.device.decodeTokPerS;
  const T = c.targetTpotMs;
  const lead = Math.ceil(devStep / Math.max(1, T)) + 1;
  const P = r.promptTokens;
  const B = received.length;
  const shownAt: number[] = [];
  for (const [i, x] of received.entries()) shownAt.push(i === 0 ? x : Math.max(x, shownAt[i - 1]! + T));
  let ready = A + P * devPer;
  const refine = { allowed: true, keepsPrefilled: c.refineKeepsPrefilled };
  if (refined.ratio < 1) ready = Math.min(ready, A + refinedReadyAt(refined.at - A, P * devPer, refined.ratio, refine));
  let t = ready;
  let covered = 0;
  let got = 0;
  let shown = 0;
  for (;;) {
    while (got < B && received[got]! <= t) got++;
    while (shown < got && shownAt[shown]! <= t) shown++;
    if (covered < Math.min(got, shown + lead)) {
      t = Math.max(t, received[covered]!) + devPer;
      covered++;
      continue;
    }
    if (got === 0 || got >= B || covered >= shown + lead) break;
    const slot = (shown > 0 ? shownAt[shown - 1]! : t) + T;
    if (t + devStep <= slot || received[got]! >= t + devStep) break;
    t = received[got]!; // the cloud's next token comes before the device's own would
  }
  return { k: Math.min(covered, r.answerTokens), takeoverAt: t };
}

/** Shows the tokens as the device would: paced by the SpeedController, or as they come. */
function display(
  A: number,
  avail: number[],
  s: { k: number; B: number; received: number[]; localEta: (now: number) => number | undefined; devStep: number },
  target: number,
  controller: boolean,
  cloudMs: number,
  cloudTokens: number,
  takeover: number | undefined,
): RequestResult {
  const ctl = new SpeedController(target);
  const shown: number[] = [];
  let now = avail[0]!;
  let ready = 0; // avail is ascending: tokens [0, ready) are available at `now`
  let got = 0; // cloud tokens received by `now`
  for (let i = 0; i < avail.length; i++) {
    if (i > 0 && controller) {
      while (ready < avail.length && avail[ready]! <= now) ready++;
      while (got < s.received.length && s.received[got]! <= now) got++;
      const local = i >= s.k;
      const delay = ctl.nextDelay({
        buffered: Math.max(0, ready - i),
        cloudRemaining: i < s.k ? Math.max(0, s.B - got) : 0,
        localEtaMs: local ? undefined : s.localEta(now),
        localTpotMs: s.devStep,
        local,
      });
      now = Math.max(now + delay, avail[i]!);
    } else {
      now = Math.max(now, avail[i]!);
    }
    shown.push(now);
  }
  const gaps = shown.slice(1).map((x, i) => x - shown[i]!);
  return { ttftMs: shown[0]! - A, gaps, cloudMs, cloudTokens, takeover };
}
