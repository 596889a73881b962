/**
 * The trace through the real stack: the reference cloud and one reference
 * device (PdDevice) per phone, with simulated engines on the published timing
 * profiles, over a real binding behind the network emulator, requests
 * arriving at the trace's timestamps (× a scale). The same requests go
 * through the token-level model (simulate.ts) so the two can be compared
 * request by request: the model is then a claim the real code checks.
 */
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { CLOUD_GPU, PHONE, SimEngine, type Profile } from "../../engine/index.js";
import { startCloud } from "../../reference-cloud/index.js";
import { startNetem } from "../../transports/index.js";
import { PdDevice, type Mode as RunMode } from "../../reference-device/index.js";
import { NO_BATCHING, slowdown, type BatchingModel } from "./batching.js";
import { simulate, type Mode, type RequestResult, type SimConfig } from "./simulate.js";
import type { TraceRequest } from "./trace.js";

export type LiveMode = "device-only" | "cloud-only" | "pd";
export const LIVE_MODES: [LiveMode, Mode][] = [
  ["device-only", { kind: "device-only" }],
  ["cloud-only", { kind: "cloud-only" }],
  ["pd", { kind: "pd", budget: "planner", controller: true }],
];

export interface LiveConfig {
  transport: "ws" | "grpc" | "webtransport";
  rttMs: number;
  bandwidthMbps: number;
  /** Concurrent sequences of the cloud. */
  capacity: number;
  targetTpotMs: number;
  /** Multiplies inter-arrival times (0.25 = four times the trace's load). */
  arrivalScale: number;
  device: Profile;
  cloud: Profile;
  /** How the cloud's decode slows with its batch (batching.ts), in the live cloud engine and the model alike. Default: none. */
  batching?: BatchingModel;
  /** The devices' refinement floor (refineMinRatio), in the live devices and the model alike. Default 1: none. */
  minRefineRatio?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface LiveRun {
  mode: LiveMode;
  /** Measured on the devices' displays. */
  measured: RequestResult[];
  /** The token-level model's prediction for the same requests. */
  predicted: RequestResult[];
  /** How each request ran, from its device's report (undefined when it failed). */
  modes: (RunMode | undefined)[];
  /** The cloud engine's sequence time and tokens over the run. */
  cloud: { heldMs: number; prefilled: number; decoded: number; requests: number };
  errors: string[];
  /** Requests a device answered alone because the cloud failed it, and why. */
  fallbacks: number;
  fallbackReasons: string[];
  devices: number;
  wallMs: number;
  /** This process's event loop over the run: its longest delay and longest GC pause, ms (one machine runs every peer). */
  loop: { maxDelayMs: number; p99DelayMs: number; maxGcMs: number };
}

export const DEFAULT_LIVE: Omit<LiveConfig, "onProgress"> = {
  transport: "ws",
  rttMs: 50,
  bandwidthMbps: 100,
  capacity: 64,
  targetTpotMs: 50,
  arrivalScale: 1,
  device: PHONE,
  cloud: CLOUD_GPU,
};

/** A prompt of exactly `tokens` tokens for the simulated engine's byte tokenizer (BOS + ASCII). */
export function promptOf(tokens: number): string {
  const words = "the device shows the first token while it prefills the prompt and the cloud decodes a few more ";
  return words.repeat(Math.ceil(tokens / words.length) + 1).slice(0, Math.max(0, tokens - 1));
}

/** The model's configuration for what a live run does. */
export function modelConfig(c: Omit<LiveConfig, "onProgress">): SimConfig {
  return {
    rttMs: c.rttMs,
    bandwidthMbps: c.bandwidthMbps,
    cloud: c.cloud,
    device: c.device,
    capacity: c.capacity,
    targetTpotMs: c.targetTpotMs,
    timeScale: c.arrivalScale,
    minRefineRatio: c.minRefineRatio ?? 1,
    jitter: 0,
    seed: 1,
    cloudPace: 0,
    batching: c.batching,
  };
}

export async function replayLive(trace: TraceRequest[], mode: LiveMode, c: LiveConfig): Promise<LiveRun> {
  const predicted = simulate(trace, LIVE_MODES.find(([m]) => m === mode)![1], modelConfig(c));
  const batching = c.batching ?? NO_BATCHING;
  const engine = new SimEngine({
    profile: c.cloud,
    sequences: c.capacity,
    decodeSlowdown: (b) => slowdown(batching, Math.max(1, b)),
  });
  const cloud = await startLiveCloud(mode, c, engine);
  const direct = cloud.urls[c.transport]!;
  const path = await startNetem({
    target: { port: Number(new URL(direct).port) },
    rttMs: c.rttMs,
    bandwidthMbps: c.bandwidthMbps,
  });
  const pool = new DevicePool(mode, c, path.via(direct), cloud.certificate.cert);
  try {
    // The phones a run needs at once (the model's peak, with room for the live run's), calibrated and
    // connected before the first arrival: a phone calibrates when its app starts, not when asked.
    const phones = Math.min(trace.length, Math.ceil(1.5 * peakConcurrency(trace, predicted, c.arrivalScale)) + 8);
    await pool.warm(phones);
    const before = { ...engine.usage };
    const outcomes: ReplayOutcome = { modes: new Array(trace.length).fill(undefined), errors: [], fallbackReasons: [] };
    const measured: RequestResult[] = new Array(trace.length);
    let done = 0;
    const loop = monitorLoop();
    const t0 = performance.now() + 50;
    await Promise.all(
      trace.map(async (r, i) => {
        measured[i] = await replayOne(r, i, t0 + r.atMs * c.arrivalScale, pool, mode, c, outcomes);
        c.onProgress?.(++done, trace.length);
      }),
    );
    const wallMs = performance.now() - t0;
    const usage = usageSince(engine, before);
    // Sequence time is measured by the engine in total; each request gets the mean.
    for (const m of measured) {
      m.cloudMs = usage.heldMs / trace.length;
      m.cloudTokens = usage.decoded / trace.length;
    }
    return {
      mode,
      measured,
      predicted,
      modes: outcomes.modes,
      cloud: usage,
      errors: outcomes.errors,
      fallbacks: outcomes.fallbackReasons.length,
      fallbackReasons: outcomes.fallbackReasons,
      devices: pool.size,
      wallMs,
      loop: loop.stop(),
    };
  } finally {
    await pool.close();
    await path.close();
    await cloud.close({ drainSeconds: 0 });
  }
}

function startLiveCloud(mode: LiveMode, c: LiveConfig, engine: SimEngine) {
  return startCloud(
    {
      logLevel: "silent",
      listen: { [c.transport]: "127.0.0.1:0" },
      queueLimit: 100_000,
      decodePace: 0, // a batching GPU frees a sequence soonest by decoding at full speed (the planner's cost model)
      drainSeconds: 0,
      // Cloud-only decodes whole answers; P/D budgets stay within the planner's 256 (as in the model).
      limits: {
        maxConcurrentRequests: 64,
        maxCloudTokenBudget: mode === "cloud-only" ? 1 << 20 : 256,
        maxRequestDurationMs: 3_600_000,
        idleTimeoutMs: 3_600_000,
        handshakeTimeoutMs: 60_000,
      },
    },
    { engine },
  );
}

/** Phones: an idle one serves the next arrival; a new one is made when none is idle. */
class DevicePool {
  private readonly idle: PdDevice[] = [];
  private readonly all: PdDevice[] = [];
  constructor(
    private readonly mode: LiveMode,
    private readonly c: LiveConfig,
    private readonly url: string,
    private readonly ca: string,
  ) {}

  get size(): number {
    return this.all.length;
  }

  async warm(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, async () => this.idle.push(await this.create())));
  }

  async take(): Promise<PdDevice> {
    return this.idle.pop() ?? (await this.create());
  }

  give(d: PdDevice): void {
    this.idle.push(d);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((d) => d.close().catch(() => undefined)));
  }

  private async create(): Promise<PdDevice> {
    const d = await PdDevice.create({
      engine: new SimEngine({ profile: this.c.device }),
      cloud: this.mode === "device-only" ? undefined : this.url,
      client: { ca: this.ca },
      useKv: false, // the profiles' models differ: KV images are not exchangeable (PDD-KV-002)
      targetTpotMs: this.c.targetTpotMs,
      refineMinRatio: this.c.minRefineRatio,
    });
    if (this.mode !== "device-only") await d.rtt(); // connected and measured, as a phone that has used the service
    this.all.push(d);
    return d;
  }
}

/** What the devices reported over a replay, by request. */
interface ReplayOutcome {
  modes: (RunMode | undefined)[];
  errors: string[];
  fallbackReasons: string[];
}

/** Request `i` at its arrival time, on a phone from the pool; its tokens timed as the display shows them. */
async function replayOne(
  r: TraceRequest,
  i: number,
  at: number,
  pool: DevicePool,
  mode: LiveMode,
  c: LiveConfig,
  out: ReplayOutcome,
): Promise<RequestResult> {
  await new Promise((res) => setTimeout(res, Math.max(0, at - performance.now())));
  const device = await pool.take();
  const shown: number[] = [];
  try {
    const rep = await device.generate(promptOf(r.promptTokens), {
      maxTokens: r.answerTokens,
      localOnly: mode === "device-only",
      cloudOnly: mode === "cloud-only",
      targetTpotMs: c.targetTpotMs,
      onText: (t) => {
        const now = performance.now();
        for (let k = 0; k < t.length; k++) shown.push(now);
      },
    });
    out.modes[i] = rep.mode;
    if (rep.mode === "fallback") out.fallbackReasons.push(`request ${i}: ${rep.fallbackReason ?? "?"}`);
    if (shown.length !== r.answerTokens)
      out.errors.push(`request ${i}: ${shown.length} of ${r.answerTokens} tokens shown`);
  } catch (e) {
    out.errors.push(`request ${i}: ${(e as Error).message}`);
  } finally {
    pool.give(device);
  }
  return {
    ttftMs: (shown[0] ?? Number.NaN) - at,
    gaps: shown.slice(1).map((x, j) => x - shown[j]!),
    cloudMs: 0,
    cloudTokens: 0,
    takeover: undefined,
  };
}

/** Watches this process's event loop delay and GC pauses until stop(). */
function monitorLoop(): { stop(): LiveRun["loop"] } {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  let maxGcMs = 0;
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) maxGcMs = Math.max(maxGcMs, e.duration);
  });
  gcs.observe({ entryTypes: ["gc"] });
  delay.enable();
  return {
    stop: () => {
      delay.disable();
      gcs.disconnect();
      return { maxDelayMs: delay.max / 1e6, p99DelayMs: delay.percentile(99) / 1e6, maxGcMs };
    },
  };
}

function usageSince(engine: SimEngine, before: SimEngine["usage"]): LiveRun["cloud"] {
  const u = engine.usage;
  return {
    heldMs: u.heldMs - before.heldMs,
    prefilled: u.prefilled - before.prefilled,
    decoded: u.decoded - before.decoded,
    requests: u.acquired - before.acquired,
  };
}

/** The most requests the model has in flight at once. */
function peakConcurrency(trace: TraceRequest[], predicted: RequestResult[], scale: number): number {
  const events = trace.flatMap((r, i) => {
    const p = predicted[i]!;
    const start = r.atMs * scale;
    return [
      [start, 1],
      [start + p.ttftMs + p.gaps.reduce((a, b) => a + b, 0), -1],
    ] as [number, number][];
  });
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let n = 0;
  let peak = 0;
  for (const [, d] of events) {
    n += d;
    peak = Math.max(peak, n);
  }
  return peak;
}
