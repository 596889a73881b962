/**
 * `PdDevice`: the reference device as a library. It owns the local model and
 * a connection to one cloud, and answers prompts with the P/D-Device method;
 * with no cloud, or when the cloud is unreachable, it answers alone.
 */
import { create } from "@bufbuild/protobuf";
import { ErrorCode, ModelIdentitySchema, PddError } from "../proto/index.js";
import { ensureDefaultModel, loadEngine, sameBytes, type InferenceEngine, type Sampling } from "../engine/index.js";
import type { ClientOptions } from "../transports/index.js";
import { CloudLink } from "./cloud-link.js";
import { withCloudLogprobs } from "./cloud-logprobs.js";
import { connectFailure, type ConnectFailure } from "./connect-failure.js";
import { plan, type Plan } from "./planner.js";
import { promptTokens as tokensOf, type Prompt } from "./prompt.js";
import { DeviceRun, type Emulation, type Report } from "./run.js";

/** The display pace a person reads at, when neither the caller nor the options set one (`pdd plan` uses it too). */
export const DEFAULT_TARGET_TPOT_MS = 40;

export interface DeviceOptions {
  /** A loaded engine, or a model path (default: the embedded tiny model). */
  engine?: InferenceEngine;
  modelPath?: string;
  threads?: number;
  /**
   * Concurrent requests: sequences in the local context (default 4). KV images
   * carry the stream count (spec §7.2), so a device imports the reference
   * cloud's images only with its 4.
   */
  sequences?: number;
  /** Cloud URL (ws://, wss://, grpc://, grpcs://, https://). Absent: local only. */
  cloud?: string;
  client?: ClientOptions;
  /** Target time per output token, ms. Default 40. */
  targetTpotMs?: number;
  /**
   * Tokens the cloud may produce per request. Default "auto": enough tokens to
   * cover the device's expected prefill and catch-up time at the target TPOT,
   * from the device's calibrated rates.
   */
  cloudBudget?: number | "auto";
  /** Ask for KV chunks when the models are identical. Default true. */
  useKv?: boolean;
  /** Ask for a refined prompt at this ratio (0, 1], always. Default: off. */
  refineRatio?: number;
  /**
   * Let the planner choose a refinement ratio no lower than this (0, 1] when
   * the cloud offers refinement and it lowers the cloud's cost at the target
   * pace: the answer quality floor the user accepts. Default 1 (never).
   * Ignored when `refineRatio` is set.
   */
  refineMinRatio?: number;
  /** Tokens per local prefill step (how often the device looks up from prefilling). Default 64. */
  prefillChunk?: number;
  /** Reconnection backoff after a failed connection attempt, ms. Default 500, doubling to 30,000. */
  reconnect?: { initialMs?: number; maxMs?: number };
  /**
   * Emulates a slower device (a phone) on a fast machine: milliseconds per
   * token of local prefill and of local decoding, added to each step or (mode
   * "pad") padding each step to that in all (Emulation). For demos, tests and
   * benchmarks; none (the default) for real devices.
   */
  emulate?: Emulation;
  /**
   * Answer on the device alone when the cloud cannot be reached. Default
   * true; false makes `generate` throw UNAVAILABLE naming the cause instead.
   */
  fallback?: boolean;
}

export interface GenerateOptions {
  maxTokens?: number;
  sampling?: Sampling;
  /** Run without the cloud, as the baseline. */
  localOnly?: boolean;
  /** Let the cloud decode the whole answer (the other baseline): no local model use. */
  cloudOnly?: boolean;
  onText?: (text: string) => void;
  /** Stops the answer early (RunOptions.signal): resolves with what was shown, the cloud cancelled. */
  signal?: AbortSignal;
  targetTpotMs?: number;
  cloudBudget?: number | "auto";
  /**
   * Report each shown token's log-probability with this many alternatives
   * (Report.logprobs; engines with `givesLogprobs`). The cloud's tokens get
   * theirs from the device's catch-up, or are scored after the answer (cloud-logprobs.ts).
   */
  logprobs?: number;
}

export class PdDevice {
  private link: CloudLink | undefined;
  private connecting: Promise<CloudLink | undefined> | undefined;

  private constructor(
    readonly engine: InferenceEngine,
    private readonly options: DeviceOptions,
    private readonly ownsEngine: boolean,
  ) {}

  static async create(options: DeviceOptions = {}): Promise<PdDevice> {
    // 4 sequences, as the reference cloud: KV images carry the stream count (spec §7.2).
    const engine =
      options.engine ??
      (await loadEngine({
        modelPath: options.modelPath ?? ensureDefaultModel("tiny"),
        threads: options.threads,
        sequences: options.sequences ?? 4,
      }));
    const device = new PdDevice(engine, options, options.engine === undefined);
    await device.calibrate();
    return device;
  }

  /** Measured local speed (emulation included): ms per prefill token and per decoded token. */
  rates = { prefillMsPerToken: 1, decodeMsPerToken: 10 };

  /** A short timed prefill and decode, so the cloud budget fits this device. */
  private async calibrate(): Promise<void> {
    const slot = await this.engine.acquire();
    try {
      const probe = Array.from({ length: 64 }, (_, i) => this.engine.tokenize(" calibrate")[1 + (i % 2)] ?? 1);
      let t = performance.now();
      await slot.prefill(probe);
      const prefill = (performance.now() - t) / probe.length;
      t = performance.now();
      let n = 0;
      for await (const _ of slot.generate({}, 4)) n++;
      const decode = (performance.now() - t) / Math.max(1, n);
      const e = this.options.emulate ?? {};
      const at = (own: number, ms = 0) => (e.mode === "pad" ? Math.max(own, ms) : own + ms);
      this.rates = {
        prefillMsPerToken: at(prefill, e.prefillMsPerToken),
        decodeMsPerToken: at(decode, e.decodeMsPerToken),
      };
    } finally {
      await slot.release();
    }
  }

  /** What the device has measured of its cloud: round trip, prefill and decode rates (defaults until measured). */
  observed: { rttMs?: number; cloudPrefillTokPerS?: number; cloudDecodeTokPerS?: number } = {};

  /** The planner's choice for a prompt from the calibrated and observed rates (planner.ts). */
  planFor(
    promptTokens: number,
    targetTpotMs: number,
    answerTokens = 256,
    kvBytesPerToken = 0,
    refineMinRatio = 1,
    /** The cloud's tokenizer is the device's: a refined prompt's spans let it keep what it prefilled. */
    sameTokenizer = true,
  ): Plan {
    const { prefillMsPerToken: p, decodeMsPerToken: d } = this.rates;
    return plan({
      kv: { allowed: kvBytesPerToken > 0, bytesPerToken: kvBytesPerToken },
      refine: { allowed: refineMinRatio < 1, minRatio: refineMinRatio, keepsPrefilled: sameTokenizer },
      promptTokens: Math.max(1, promptTokens),
      answerTokens,
      rttMs: this.observed.rttMs ?? 20,
      bandwidthMbps: 100,
      // Until a FirstToken says otherwise, assume a cloud 10× the device's prefill.
      cloud: {
        queueMs: 0,
        prefillTokPerS: this.observed.cloudPrefillTokPerS ?? 10_000 / Math.max(1e-3, p),
        decodeTokPerS: this.observed.cloudDecodeTokPerS ?? 50,
      },
      device: { prefillTokPerS: 1000 / Math.max(1e-3, p), decodeTokPerS: 1000 / Math.max(1e-3, d) },
      targetTpotMs: Math.max(1, targetTpotMs), // 0 = show as fast as possible
      budget: { min: 4, max: this.link?.ack?.limits?.maxCloudTokenBudget || 256 },
    });
  }

  /** The cloud budget for a prompt (the planner's). */
  budgetFor(promptTokens: number, targetTpotMs: number, answerTokens = 256): number {
    return this.planFor(promptTokens, targetTpotMs, answerTokens).chosen.budget;
  }

  /** Keeps the rates current from a finished request (exponential average). */
  private learn(r: Report, promptTokens: number): void {
    const avg = (old: number | undefined, x: number) => (old === undefined ? x : 0.7 * old + 0.3 * x);
    if (r.prefillMs.device !== null && !r.kvImported && !r.refinement?.used && promptTokens >= 16) {
      this.rates.prefillMsPerToken = avg(this.rates.prefillMsPerToken, r.prefillMs.device / promptTokens);
    }
    if (r.localDecodeMs !== undefined) this.rates.decodeMsPerToken = avg(this.rates.decodeMsPerToken, r.localDecodeMs);
    if (r.prefillMs.cloud && r.cloudPromptTokens)
      this.observed.cloudPrefillTokPerS = avg(
        this.observed.cloudPrefillTokPerS,
        (1000 * r.cloudPromptTokens) / r.prefillMs.cloud,
      );
    if (r.cloudDecodeTokPerS)
      this.observed.cloudDecodeTokPerS = avg(this.observed.cloudDecodeTokPerS, r.cloudDecodeTokPerS);
  }

  /** The cloud link, (re)connecting when needed; undefined when the cloud cannot be reached. */
  private async cloudLink(): Promise<CloudLink | undefined> {
    const url = this.options.cloud;
    if (!url) return undefined;
    if (this.link?.live && !this.link.draining) return this.link;
    // After a failed attempt, requests run locally until the backoff has passed.
    if (performance.now() < this.retryAt) return undefined;
    this.connecting ??= (async () => {
      try {
        const link = await CloudLink.open(url, create(ModelIdentitySchema, { ...this.engine.info }), {
          ...this.options.client,
          kv: this.options.useKv !== false,
        });
        // The first request waits for the HelloAck: it says which model the cloud runs. The link gives up
        // after its handshake timeout with connection error TIMEOUT (PDD-CONN-022).
        await link.helloAck();
        this.link = link;
        this.backoffMs = 0;
        this.retryAt = 0;
        // Measure the round trip for the planner without delaying this first request.
        void link.ping(2000).then(
          (ms) => (this.observed.rttMs = ms),
          () => undefined,
        );
        this.failure = undefined;
        return link;
      } catch (e) {
        this.failure = connectFailure(e, url);
        // Exponential backoff with jitter: initial, ×2 per failure, capped.
        const { initialMs, maxMs } = { initialMs: 500, maxMs: 30_000, ...this.options.reconnect };
        this.backoffMs = Math.min(maxMs, this.backoffMs ? this.backoffMs * 2 : initialMs);
        this.retryAt = performance.now() + this.backoffMs * (0.8 + 0.4 * Math.random());
        return undefined;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  private backoffMs = 0;
  private retryAt = 0;
  /** Why the last connection attempt failed; undefined once connected. */
  failure: ConnectFailure | undefined;
  /** The current reconnection backoff, ms (0 when connected or never failed). */
  get reconnectBackoffMs(): number {
    return this.backoffMs;
  }

  /**
   * Connects to the cloud now (connect + HelloAck, bounded by the connect and
   * handshake timeouts, 10 s each) and says why it cannot be used; undefined
   * when it can, or when there is no cloud. `pdd device serve` asks at startup.
   */
  async probeCloud(): Promise<ConnectFailure | undefined> {
    if (!this.options.cloud) return undefined;
    return (await this.cloudLink()) ? undefined : (this.failure ?? this.unavailable());
  }

  /** Measured round-trip time to the cloud, ms (undefined without a cloud). */
  async rtt(): Promise<number | undefined> {
    const link = await this.cloudLink();
    return link?.ping();
  }

  /** Answers `prompt`: a text, or a chat rendered by the model's template (prompt.ts). */
  async generate(prompt: Prompt, opts: GenerateOptions = {}): Promise<Report> {
    const link = opts.localOnly ? undefined : await this.cloudLink();
    const unavailable = !opts.localOnly && this.options.cloud && !link ? this.unavailable() : undefined;
    if (unavailable && this.options.fallback === false)
      throw new PddError(ErrorCode.UNAVAILABLE, `cloud not usable, ${unavailable.message}`);
    const targetTpotMs = opts.targetTpotMs ?? this.options.targetTpotMs ?? DEFAULT_TARGET_TPOT_MS;
    const budgetOpt = opts.cloudBudget ?? this.options.cloudBudget ?? "auto";
    const promptIds = tokensOf(this.engine, prompt);
    const promptTokens = promptIds.length;
    // Past the context llama.cpp shifts it silently (issue 16): refuse a prompt that does not fit, and stop at the context.
    const room = this.engine.contextSize - promptTokens;
    if (room < 1)
      throw new PddError(
        ErrorCode.PROMPT_TOO_LONG,
        `the prompt is ${promptTokens} tokens; the model's context holds ${this.engine.contextSize}`,
      );
    const maxTokens = Math.min(opts.maxTokens ?? 64, room);
    // KV is possible with the cloud's own model; the planner then says whether it beats recomputing.
    const ack = link?.ack;
    const kvPossible =
      this.options.useKv !== false &&
      ack?.capabilities?.kvChunks === true &&
      ack.cloudModel !== undefined &&
      sameBytes(ack.cloudModel.modelFingerprint, this.engine.info.modelFingerprint);
    // Refinement is the planner's to choose within the user's floor, when the cloud can refine.
    const refineFloor =
      this.options.refineRatio === undefined && ack?.capabilities?.refinement === true
        ? (this.options.refineMinRatio ?? 1)
        : 1;
    const planned =
      budgetOpt === "auto" && !opts.cloudOnly
        ? this.planFor(
            promptTokens,
            targetTpotMs,
            maxTokens,
            kvPossible ? this.engine.kvBytesPerToken : 0,
            refineFloor,
            ack?.cloudModel !== undefined &&
              sameBytes(ack.cloudModel.tokenizerFingerprint, this.engine.info.tokenizerFingerprint),
          )
        : undefined;
    const cloudBudget = opts.cloudOnly ? maxTokens : planned ? planned.chosen.budget : (budgetOpt as number);
    const useKv = this.options.useKv !== false && (planned ? !kvPossible || planned.chosen.kv : true);
    const refineRatio =
      this.options.refineRatio ?? (planned && planned.chosen.ratio < 1 ? planned.chosen.ratio : undefined);
    const run = new DeviceRun(this.engine, prompt, link, {
      cloudUnavailable: unavailable,
      maxTokens,
      sampling: opts.sampling,
      targetTpotMs,
      cloudBudget,
      useKv,
      refineRatio,
      decodeMsPerToken: this.rates.decodeMsPerToken,
      prefillMsPerToken: this.rates.prefillMsPerToken,
      ...(this.observed.cloudDecodeTokPerS ? { cloudMsPerToken: 1000 / this.observed.cloudDecodeTokPerS } : {}),
      prefillChunk: this.options.prefillChunk ?? 64,
      emulate: this.options.emulate,
      cloudOnly: opts.cloudOnly,
      onText: opts.onText,
      signal: opts.signal,
      logprobs: opts.logprobs,
    });
    const report = await run.run();
    this.learn(report, promptTokens);
    if (opts.logprobs !== undefined)
      report.logprobs = await withCloudLogprobs(this.engine, promptIds, report, opts.logprobs);
    return maxTokens < (opts.maxTokens ?? 64) ? { ...report, stoppedAtContext: true } : report;
  }

  async close(): Promise<void> {
    await this.link?.close();
    if (this.ownsEngine) await this.engine.close();
  }

  /**
   * Why there is no link: the last attempt's failure. The backoff before the next attempt is not in the
   * message: a one-shot `pdd device` exits without one, and "next attempt in 484 ms" misled a user there.
   */
  private unavailable(): ConnectFailure {
    return this.failure ?? { cause: "refused-by-cloud" as const, message: "refused-by-cloud: not connected" };
  }
}
