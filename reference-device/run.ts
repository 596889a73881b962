/**
 * One request at the reference device: the P/D-Device method.
 *
 *   submit ──▶ PrefillRequest ─────────────▶ cloud prefill ─▶ FirstToken ─▶ TokenBatch …
 *     │                                           (shown at once)   (paced by the speed controller)
 *     └──▶ local prefill of the prompt ─▶ catch-up over the cloud tokens received ─▶ Takeover(k)
 *                                                                                  └─▶ local decode from k
 *
 * With identical models it imports the cloud's KV image instead of
 * prefilling; with a refined prompt it prefills the shorter one; when the
 * cloud fails at any point it finishes alone, keeping every token it showed.
 *
 * DeviceRun wires the parts together: cloud frames go through the state
 * machine to what the cloud said (cloud-answer.ts), the KV receiver
 * (kv-receiver.ts) and the display (display.ts); the local pipeline
 * (local-pipeline.ts) reads them and feeds the display.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DeviceFrameSchema,
  DeviceRequestState,
  EndReason,
  ErrorCode,
  PddError,
  type CloudFrame,
  type DeviceEvent,
  type DeviceFrame,
  type PrefillRequest,
} from "../proto/index.js";
import { sameBytes, type InferenceEngine as Engine, type Sampling } from "../engine/index.js";
import { CloudAnswer } from "./cloud-answer.js";
import type { CloudLink } from "./cloud-link.js";
import { Display } from "./display.js";
import { KvReceiver } from "./kv-receiver.js";
import { LocalPipeline } from "./local-pipeline.js";
import { prefillRequest } from "./prefill-request.js";
import { promptText, promptTokens, type Prompt } from "./prompt.js";
import { scorerReport, whyNotRefined, type Report } from "./report.js";

export type { Mode, Report } from "./report.js";

/**
 * A slower device emulated on a fast machine: milliseconds per local prefill
 * and decode token, added to each step ("add", the default) or padding each
 * step to that many in all ("pad": the device runs at 1000/ms tokens per
 * second whatever this machine's own speed, as long as it is faster).
 */
export interface Emulation {
  prefillMsPerToken?: number;
  decodeMsPerToken?: number;
  mode?: "add" | "pad";
}

export interface RunOptions {
  maxTokens: number;
  sampling?: Sampling;
  targetTpotMs: number;
  cloudBudget: number;
  useKv: boolean;
  refineRatio?: number;
  /** The device's calibrated ms per decoded token (reported in DeviceProgress). */
  decodeMsPerToken?: number;
  /** Ms between the cloud's tokens seen on earlier requests: its next token's due time before this one's are measured. */
  cloudMsPerToken?: number;
  /** The device's calibrated ms per prefilled token: the display's estimate of when the device is ready. */
  prefillMsPerToken?: number;
  prefillChunk: number;
  /** Log-probabilities of the device's own tokens, with this many alternatives each (engines that give them). */
  logprobs?: number;
  /** How long a granted KV image may go without a chunk before the device recomputes (PDD-KV-020). Default 10,000. */
  kvDeadlineMs?: number;
  emulate?: Emulation;
  /** Set when a cloud was asked for but could not be connected: the run falls back at once, saying why. */
  cloudUnavailable?: { cause: string; message: string };
  /** The cloud-only baseline: show the cloud's tokens, never run the local model. */
  cloudOnly?: boolean;
  onText?: (text: string) => void;
  /**
   * Stops the run early (a client that went away, a stop string): the local
   * work stops at its next step, tokens not yet shown are dropped, the cloud
   * is sent Cancel, the sequence is released; run() resolves with what was shown.
   */
  signal?: AbortSignal;
}

const deviceFrame = (body: NonNullable<MessageInitShape<typeof DeviceFrameSchema>["body"]>): DeviceFrame =>
  create(DeviceFrameSchema, { body });

export class DeviceRun {
  private readonly t0 = performance.now();
  private readonly request: PrefillRequest;
  /** Set when the request went to a live link. */
  private readonly state: DeviceRequestState | undefined;
  private readonly sameTokenizer: boolean;
  private readonly sameModel: boolean;
  private readonly cloud = new CloudAnswer();
  private readonly kv: KvReceiver;
  /** Fires when a granted KV image makes no progress for the KV deadline. */
  private kvTimer: NodeJS.Timeout | undefined;
  /** How long a Takeover or Cancel waits for its End before the request is closed here (PDD-SM-008). */
  static endWaitMs = 10_000;
  private readonly display: Display;
  private readonly local: LocalPipeline;
  /** The takeover index once decided; cloud tokens from k on are not shown. */
  private takeoverAt: number | undefined;
  /** Whether the PrefillRequest went to the link: only then is there a cloud request to release. */
  private requested = false;
  /** Whether a Takeover (or Cancel) went to the cloud: nothing else needs to release it. */
  private takeoverOnWire = false;
  /** The device's model failed and the answer was recomputed: why (Report.recovered). */
  private recovered: string | undefined;
  /** The local pipeline waiting for a cloud event, if it is. */
  private wakeLocal: (() => void) | undefined;

  constructor(
    private readonly engine: Engine,
    prompt: Prompt,
    private readonly link: CloudLink | undefined,
    private readonly opts: RunOptions,
  ) {
    const cm = link?.ack?.cloudModel;
    this.sameTokenizer = cm !== undefined && sameBytes(cm.tokenizerFingerprint, engine.info.tokenizerFingerprint);
    const sameModel = cm !== undefined && sameBytes(cm.modelFingerprint, engine.info.modelFingerprint);
    this.sameModel = sameModel;
    const requestId = link?.live
      ? link.register({ onFrame: (f) => this.onCloudFrame(f), onLost: (e) => this.onCloudLost(e) })
      : 0;
    const tokens = promptTokens(engine, prompt);
    // A templated chat's IDs go to a cloud that takes them (PDD-REQ-002); to any other, its text (prompt.ts).
    const sendIds = typeof prompt !== "string" && this.sameTokenizer && link?.ack?.capabilities?.tokenIds === true;
    // A templated chat sent as text is tokenized otherwise at the cloud: no KV image or refinement span fits it.
    const samePromptTokens = typeof prompt === "string" || sendIds;
    const wire = { text: promptText(prompt), ...(sendIds ? { tokens } : {}) };
    this.request = prefillRequest(requestId, wire, opts, opts.useKv && sameModel && samePromptTokens);
    // The largest image this model makes for every position the request may hold, plus the header (PDD-KV-016).
    const positions = tokens.length + opts.maxTokens;
    this.kv = new KvReceiver((engine.kvBytesPerToken + 16) * positions + (64 << 10));
    if (link?.live) this.state = new DeviceRequestState(this.request);
    else if (link) this.cloud.fail(`connection lost before the request: ${link.lostWith?.message}`, "lost");
    else if (opts.cloudUnavailable) this.cloud.fail(opts.cloudUnavailable.message, opts.cloudUnavailable.cause);
    this.display = new Display(opts.targetTpotMs, this.paceSource(), opts.onText);
    this.local = new LocalPipeline(engine, prompt, opts, {
      cloud: this.cloud,
      kv: this.kv,
      display: this.display,
      cloudModelFingerprint: cm?.modelFingerprint,
      sameTokenizer: this.sameTokenizer,
      samePromptTokens,
      until: (cond, timeoutMs) => this.until(cond, timeoutMs),
      progress: (p) => this.sendProgress(p),
      takeover: (k) => this.takeover(k),
      abandonCloud: async (why) => {
        if (!this.state) return false;
        this.recovered = why;
        await this.abandonCloud(ErrorCode.CANCELLED, why, "local-eval");
        return true;
      },
    });
    opts.signal?.addEventListener("abort", () => this.stop(), { once: true });
  }

  async run(): Promise<Report> {
    const slot = await this.engine.acquire();
    try {
      // A run stopped before it started asks the cloud for nothing.
      if (this.state && this.link && !this.opts.signal?.aborted) {
        this.requested = true; // before the await: a Cancel sent meanwhile is queued after the request
        await this.link
          .send(deviceFrame({ case: "prefillRequest", value: this.request }))
          .catch((e: unknown) => this.onCloudLost(PddError.from(e)));
      }
      const display = this.display.run();
      try {
        if (this.opts.cloudOnly) await this.showCloudOnly();
        else await this.local.run(slot);
      } catch (e) {
        if (!this.opts.signal?.aborted) throw e;
      } finally {
        this.display.close();
        clearTimeout(this.kvTimer);
        // The sequence is free as soon as local work ends; the display may still be pacing the last tokens.
        await slot.release();
      }
      await display;
      this.display.flush();
    } finally {
      await slot.release();
      if (this.state && !this.requested) this.link?.unregister(this.request.requestId);
      else if (this.state && !this.cloud.ended && !this.takeoverOnWire) {
        // Finished without taking over (max_tokens reached first): release the cloud.
        void this.sendToCloud(
          deviceFrame({
            case: "cancel",
            value: { requestId: this.request.requestId, code: ErrorCode.CANCELLED, reason: "answer complete" },
          }),
        );
      }
    }
    return this.report();
  }

  /**
   * The run was stopped (RunOptions.signal): the answer ends at what was
   * shown, so no further cloud token is shown; the local work stops at its next step.
   */
  private stop(): void {
    this.takeoverAt ??= this.display.shownCloud;
    this.display.discard();
    // The cloud is released now, not once the local step under way has finished.
    if (this.requested && this.state && !this.cloud.done && !this.takeoverOnWire) {
      this.stopSent();
      const { requestId } = this.request;
      void this.sendToCloud(
        deviceFrame({ case: "cancel", value: { requestId, code: ErrorCode.CANCELLED, reason: "stopped by the user" } }),
      );
    }
    this.changed();
  }

  /** The cloud-only baseline: the cloud's tokens are the answer. */
  private async showCloudOnly(): Promise<void> {
    await this.until(() => this.cloud.done);
    this.takeoverAt = this.cloud.received.length;
  }

  // ---------------------------------------------------------------- cloud → parts

  private onCloudFrame(frame: CloudFrame): void {
    // After a request Error only its End comes (PDD-ORD-004), and it must still end the request.
    if (this.cloud.ended || (this.cloud.failed && frame.body.case !== "end")) return;
    const ev = this.check(frame);
    if (!ev) return;
    this.route(ev, frame);
    this.changed();
  }

  /** The frame's meaning, per the state machine; a violation stops the cloud's part (PDD-SM-001). */
  private check(frame: CloudFrame): DeviceEvent | undefined {
    try {
      const ev = this.state?.receive(frame);
      if (ev?.kind === "tokens") this.checkTokenIds(ev.startIndex, ev.tokens);
      return ev;
    } catch (e) {
      // Keep what was valid, stop using the cloud, finish locally.
      void this.abandonCloud(ErrorCode.PROTOCOL_VIOLATION, PddError.from(e).message, "violation");
      return undefined;
    }
  }

  /** A device that evaluates the cloud's IDs (same tokenizer) refuses one its model does not have (issue 13). */
  private checkTokenIds(startIndex: number, tokens: readonly { id: number }[]): void {
    if (!this.sameTokenizer) return;
    const vocab = this.engine.info.vocabSize;
    const bad = tokens.findIndex((t) => t.id >= vocab);
    if (bad >= 0)
      throw new PddError(
        ErrorCode.PROTOCOL_VIOLATION,
        `token ${tokens[bad]!.id} at index ${startIndex + bad} is outside the vocabulary of ${vocab}`,
      );
  }

  /** Stops using the cloud for this request: it is told with Cancel, and the device finishes alone. */
  private async abandonCloud(code: ErrorCode, why: string, cause: string): Promise<void> {
    if (this.cloud.done) return;
    const { requestId } = this.request;
    const cancel = this.sendToCloud(deviceFrame({ case: "cancel", value: { requestId, code, reason: why } }));
    this.stopSent();
    this.cloud.lost(why, cause);
    this.kv.interrupted(why);
    this.link?.unregister(requestId);
    this.changed();
    await cancel;
  }

  private route(ev: DeviceEvent, frame: CloudFrame): void {
    switch (ev.kind) {
      case "accepted":
        this.cloud.accepted(ev.accepted);
        this.kv.accepted(ev.accepted.kv);
        this.watchKv();
        return;
      case "tokens":
        this.cloud.tokens(ev.startIndex, ev.tokens, frame);
        if (this.takeoverAt === undefined)
          for (const t of ev.tokens) this.display.push({ piece: t.piece, source: "cloud" });
        return;
      case "kv": {
        const credit = this.kv.chunk(ev.chunk, ev.last);
        this.sendKvAbort();
        this.watchKv();
        // Return the credit as chunks are consumed (PDD-KV-009).
        const { requestId } = this.request;
        if (credit > 0)
          void this.sendToCloud(deviceFrame({ case: "kvCredit", value: { requestId, bytes: BigInt(credit) } }));
        return;
      }
      case "refined":
        this.cloud.refined = ev.refined;
        this.local.refinedArrived();
        return;
      case "error":
        this.cloud.fail(ev.error.message, "cloud-error");
        this.kv.interrupted();
        return;
      case "end":
        this.cloud.end(ev.end);
        this.kv.interrupted();
        this.link?.unregister(this.request.requestId);
        return;
      default:
        return;
    }
  }

  /** (Re)arms the KV deadline while an image is coming: a stalled transfer is given up (PDD-KV-020). */
  private watchKv(): void {
    clearTimeout(this.kvTimer);
    if (this.kv.phase !== "receiving") return;
    const ms = this.opts.kvDeadlineMs ?? 10_000;
    this.kvTimer = setTimeout(() => {
      this.kv.giveUp(`no KV chunk for ${ms} ms: the device computed the prefill itself`);
      this.sendKvAbort();
      this.changed();
    }, ms);
  }

  /**
   * Tells the cloud that an image the device gave up is not wanted, so that it
   * stops sending it and goes on with the tokens (PDD-KV-019). KvAbort is a 1.1
   * message: under 1.0 the cloud would not know it (PDD-VER-007).
   */
  private sendKvAbort(): void {
    const abort = this.kv.takeAbort();
    if (!abort || (this.link?.ack?.version?.minor ?? 0) < 1) return;
    const { requestId } = this.request;
    const reason = abort.reason.slice(0, 1024);
    void this.sendToCloud(deviceFrame({ case: "kvAbort", value: { requestId, code: abort.code, reason } }));
  }

  private onCloudLost(error: PddError): void {
    if (this.cloud.ended) return;
    this.cloud.lost(error.message, "lost");
    this.kv.interrupted();
    this.changed();
  }

  /** Wakes whatever waits on the cloud: the display and the local pipeline. */
  private changed(): void {
    this.display.wake();
    this.wakeLocal?.();
  }

  /** Resolves once `cond()` holds, or after `timeoutMs` when given. */
  private async until(cond: () => boolean, timeoutMs?: number): Promise<void> {
    let late = false;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            late = true;
            this.wakeLocal?.();
          }, timeoutMs);
    try {
      while (!cond() && !late) {
        this.opts.signal?.throwIfAborted();
        await new Promise<void>((r) => (this.wakeLocal = r));
        this.wakeLocal = undefined;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- parts → cloud

  private async sendToCloud(frame: DeviceFrame): Promise<void> {
    if (!this.link || !this.state || this.cloud.done) return;
    try {
      this.state.beforeSend(frame);
    } catch {
      return; // the state machine forbids this frame now (e.g. a Cancel after the request ended): it is not sent
    }
    await this.link.send(frame).catch((e: unknown) => this.onCloudLost(PddError.from(e)));
  }

  /** Once per request, after the prefill (informative, PDD-MSG-007). */
  private sendProgress(p: { prefilledTokens: number; coveredIndex: number; prefillTokensPerS: number }): void {
    if (!this.state) return;
    const decodeTokensPerS = 1000 / Math.max(1e-3, this.opts.decodeMsPerToken ?? 10);
    const { requestId } = this.request;
    void this.sendToCloud(
      deviceFrame({
        case: "progress",
        value: { requestId, ...p, displayedIndex: this.display.shownCloud, decodeTokensPerS },
      }),
    );
  }

  /**
   * A Takeover or Cancel went to the cloud: the answer never waits for its
   * End, and after endWaitMs without one the request is closed here, its
   * later frames ignored (PDD-SM-008, PDD-SM-002).
   */
  private stopSent(): void {
    this.takeoverOnWire = true;
    const { requestId } = this.request;
    setTimeout(() => {
      if (!this.cloud.ended) this.link?.unregister(requestId);
    }, DeviceRun.endWaitMs).unref();
  }

  /** Takes over at k: applied to the display before anything yields, then said to a cloud still sending. */
  private async takeover(k: number): Promise<void> {
    this.takeoverAt = k;
    this.display.dropCloudFrom(k);
    if (this.cloud.done || !this.state) return;
    this.stopSent();
    const { requestId } = this.request;
    if (this.state.phase === "requested") {
      // Ahead of the cloud before it even accepted: a Takeover is not
      // allowed yet (PDD-TAKEOVER-008), and no cloud token is needed.
      await this.sendToCloud(
        deviceFrame({
          case: "cancel",
          value: { requestId, code: ErrorCode.CANCELLED, reason: "the device is ahead of the cloud" },
        }),
      );
    } else await this.sendToCloud(deviceFrame({ case: "takeover", value: { requestId, index: k } }));
  }

  /** What the display's speed controller needs of the rest of the run. */
  private paceSource() {
    return {
      cloudRemaining: () =>
        this.cloud.ended || this.takeoverAt !== undefined
          ? 0
          : Math.max(0, this.cloud.grantedBudget - this.cloud.received.length),
      // A budget that covers the whole answer needs no handover: nothing to stretch for.
      localEtaMs: () =>
        this.cloud.grantedBudget >= this.opts.maxTokens || this.local.readyAt === undefined
          ? undefined
          : Math.max(0, this.local.readyAt - performance.now()),
      localTpotMs: () => this.local.tpotMs,
    };
  }

  private refinementReason(): { refinementReason?: string } {
    const why = whyNotRefined(
      this.opts.refineRatio !== undefined && this.state !== undefined,
      this.request.refine !== undefined,
      this.local.refinement,
      this.cloud.failed !== undefined,
    );
    return why ? { refinementReason: why } : {};
  }

  /**
   * The shown tokens' log-probabilities, when asked for: the device's own, and
   * the cloud's its catch-up computed (null where it did not, or where it
   * prefilled a refined prompt: not the prompt the answer is for).
   */
  private logprobs(cloudShown: number): Pick<Report, "logprobs"> {
    if (this.opts.logprobs === undefined) return {};
    const { local } = this;
    const cloud = local.refinement?.used ? [] : local.cloudLogprobs;
    return {
      logprobs: [...Array.from({ length: cloudShown }, (_, i) => cloud[i] ?? null), ...local.deviceLogprobs],
    };
  }

  private report(): Report {
    const { cloud, local } = this;
    const k = this.takeoverAt ?? cloud.received.length;
    const cloudShown = Math.min(k, cloud.received.length);
    const shown = this.display.timing(this.t0);
    return {
      text: shown.text,
      mode: cloud.failed ? "fallback" : this.link ? "pd" : "local",
      ttftMs: shown.ttftMs,
      tpotMs: shown.tpotMs,
      stalls: shown.stalls,
      cloudTokens: cloudShown,
      deviceTokens: local.deviceIds.length,
      takeoverIndex: cloud.received.length > 0 ? k : null,
      prefillMs: { cloud: cloud.prefillMs, device: local.prefillMs },
      devicePrefilledTokens: local.prefilledTokens,
      kvImported: local.kvImported,
      kv: this.kv.report(),
      refinement: local.refinement && {
        ...local.refinement,
        ...scorerReport(cloud.refined?.scorer, this.link?.ack?.cloudModel?.modelFingerprint),
      },
      ...this.refinementReason(),
      cloudModel: !this.link?.ack
        ? null
        : this.sameModel
          ? "same"
          : this.sameTokenizer
            ? "same-tokenizer"
            : "different",
      cloudTokenIds: cloud.received.slice(0, cloudShown).map((t) => t.id),
      deviceTokenIds: local.deviceIds,
      ...this.logprobs(cloudShown),
      ...(cloud.failed ? { fallbackReason: cloud.failed, fallbackCause: cloud.failedCause } : {}),
      ...(this.recovered ? { recovered: this.recovered } : {}),
      ...(local.tpotMs !== undefined ? { localDecodeMs: local.tpotMs } : {}),
      ...(cloud.promptTokens ? { cloudPromptTokens: cloud.promptTokens } : {}),
      ...(cloud.decodeTokPerS ? { cloudDecodeTokPerS: cloud.decodeTokPerS } : {}),
      ...(cloud.decodedTokens !== undefined ? { cloudDecodedTokens: cloud.decodedTokens } : {}),
      ...(cloud.endReason !== undefined ? { endReason: EndReason[cloud.endReason] } : {}),
    };
  }
}
