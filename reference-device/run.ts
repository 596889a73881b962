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
  KvFormat,
  PddError,
  PrefillRequestSchema,
  RefineMethod,
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

export interface RunOptions {
  maxTokens: number;
  sampling?: Sampling;
  targetTpotMs: number;
  cloudBudget: number;
  useKv: boolean;
  refineRatio?: number;
  /** The device's calibrated ms per decoded token (reported in DeviceProgress). */
  decodeMsPerToken?: number;
  /** The device's calibrated ms per prefilled token: the display's estimate of when the device is ready. */
  prefillMsPerToken?: number;
  prefillChunk: number;
  emulate?: { prefillMsPerToken?: number; decodeMsPerToken?: number };
  /** The cloud-only baseline: show the cloud's tokens, never run the local model. */
  cloudOnly?: boolean;
  onText?: (text: string) => void;
}

export type Mode = "pd" | "local" | "fallback";

export interface Report {
  text: string;
  mode: Mode;
  ttftMs: number;
  tpotMs: { p50: number; max: number };
  stalls: number;
  cloudTokens: number;
  deviceTokens: number;
  takeoverIndex: number | null;
  prefillMs: { cloud: number | null; device: number | null };
  kvImported: boolean;
  /** What the cloud said about KV: not asked, granted, or refused with a registry code. */
  kv: { asked: boolean; granted: boolean; refusal?: string };
  refinement: { used: boolean; originalTokens: number; keptTokens: number } | null;
  /** Token IDs shown: the cloud's [0, k) then the device's. */
  cloudTokenIds: number[];
  deviceTokenIds: number[];
  /** Why the cloud was not (fully) used, for fallback runs. */
  fallbackReason?: string;
  endReason?: string;
  /** Measured ms per locally decoded token, when the device decoded. */
  localDecodeMs?: number;
  /** The cloud's prompt tokens (Accepted.prompt_tokens), for its prefill rate. */
  cloudPromptTokens?: number;
  /** The rate the cloud decoded (and sent) at: End.usage decoded_tokens / decode_us. */
  cloudDecodeTokPerS?: number;
}

const deviceFrame = (body: NonNullable<MessageInitShape<typeof DeviceFrameSchema>["body"]>): DeviceFrame =>
  create(DeviceFrameSchema, { body });

export class DeviceRun {
  private readonly t0 = performance.now();
  private readonly request: PrefillRequest;
  /** Set when the request went to a live link. */
  private readonly state: DeviceRequestState | undefined;
  private readonly sameTokenizer: boolean;
  private readonly cloud = new CloudAnswer();
  private readonly kv = new KvReceiver();
  private readonly display: Display;
  private readonly local: LocalPipeline;
  /** The takeover index once decided; cloud tokens from k on are not shown. */
  private takeoverAt: number | undefined;
  /** Whether a Takeover (or Cancel) went to the cloud: nothing else needs to release it. */
  private takeoverOnWire = false;
  /** The local pipeline waiting for a cloud event, if it is. */
  private wakeLocal: (() => void) | undefined;

  constructor(
    private readonly engine: Engine,
    prompt: string,
    private readonly link: CloudLink | undefined,
    private readonly opts: RunOptions,
  ) {
    const cm = link?.ack?.cloudModel;
    this.sameTokenizer = cm !== undefined && sameBytes(cm.tokenizerFingerprint, engine.info.tokenizerFingerprint);
    const sameModel = cm !== undefined && sameBytes(cm.modelFingerprint, engine.info.modelFingerprint);
    const requestId = link?.live
      ? link.register({ onFrame: (f) => this.onCloudFrame(f), onLost: (e) => this.onCloudLost(e) })
      : 0;
    this.request = prefillRequest(requestId, prompt, opts, opts.useKv && sameModel);
    if (link?.live) this.state = new DeviceRequestState(this.request);
    else if (link) this.cloud.fail(`cloud unavailable: ${link.lostWith?.message ?? "not connected"}`);
    this.display = new Display(opts.targetTpotMs, this.paceSource(), opts.onText);
    this.local = new LocalPipeline(engine, prompt, opts, {
      cloud: this.cloud,
      kv: this.kv,
      display: this.display,
      cloudModelFingerprint: cm?.modelFingerprint,
      sameTokenizer: this.sameTokenizer,
      until: (cond) => this.until(cond),
      progress: (p) => this.sendProgress(p),
      takeover: (k) => this.takeover(k),
    });
  }

  async run(): Promise<Report> {
    const slot = await this.engine.acquire();
    try {
      if (this.state && this.link) {
        await this.link
          .send(deviceFrame({ case: "prefillRequest", value: this.request }))
          .catch((e: unknown) => this.onCloudLost(PddError.from(e)));
      }
      const display = this.display.run();
      try {
        if (this.opts.cloudOnly) await this.showCloudOnly();
        else await this.local.run(slot);
      } finally {
        this.display.close();
      }
      await display;
      this.display.flush();
    } finally {
      await slot.release();
      if (this.state && !this.cloud.ended && !this.takeoverOnWire) {
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
      return this.state?.receive(frame);
    } catch (e) {
      // Keep what was valid, stop using the cloud, finish locally.
      const err = PddError.from(e);
      const { requestId } = this.request;
      void this.sendToCloud(
        deviceFrame({
          case: "cancel",
          value: { requestId, code: ErrorCode.PROTOCOL_VIOLATION, reason: err.rawMessage },
        }),
      );
      this.onCloudLost(err);
      return undefined;
    }
  }

  private route(ev: DeviceEvent, frame: CloudFrame): void {
    switch (ev.kind) {
      case "accepted":
        this.cloud.accepted(ev.accepted);
        this.kv.accepted(ev.accepted.kv);
        return;
      case "tokens":
        this.cloud.tokens(ev.startIndex, ev.tokens, frame);
        if (this.takeoverAt === undefined)
          for (const t of ev.tokens) this.display.push({ piece: t.piece, source: "cloud" });
        return;
      case "kv": {
        const credit = this.kv.chunk(ev.chunk, ev.last);
        // Return the credit as chunks are consumed (PDD-KV-009).
        const { requestId } = this.request;
        if (credit > 0)
          void this.sendToCloud(deviceFrame({ case: "kvCredit", value: { requestId, bytes: BigInt(credit) } }));
        return;
      }
      case "refined":
        this.cloud.refined = ev.refined;
        return;
      case "error":
        this.cloud.fail(`cloud error: ${ev.error.message}`);
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

  private onCloudLost(error: PddError): void {
    if (this.cloud.ended) return;
    this.cloud.lost(`cloud lost: ${error.message}`);
    this.kv.interrupted();
    this.changed();
  }

  /** Wakes whatever waits on the cloud: the display and the local pipeline. */
  private changed(): void {
    this.display.wake();
    this.wakeLocal?.();
  }

  private async until(cond: () => boolean): Promise<void> {
    while (!cond()) {
      await new Promise<void>((r) => (this.wakeLocal = r));
      this.wakeLocal = undefined;
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

  /** Takes over at k: applied to the display before anything yields, then said to a cloud still sending. */
  private async takeover(k: number): Promise<void> {
    this.takeoverAt = k;
    this.display.dropCloudFrom(k);
    if (this.cloud.done || !this.state) return;
    this.takeoverOnWire = true;
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

  private report(): Report {
    const { cloud, local } = this;
    const k = this.takeoverAt ?? cloud.received.length;
    const cloudShown = Math.min(k, cloud.received.length);
    const shown = this.display.timing(this.t0);
    return {
      text: shown.text,
      mode: !this.link ? "local" : cloud.failed ? "fallback" : "pd",
      ttftMs: shown.ttftMs,
      tpotMs: shown.tpotMs,
      stalls: shown.stalls,
      cloudTokens: cloudShown,
      deviceTokens: local.deviceIds.length,
      takeoverIndex: this.link && cloud.received.length > 0 ? k : null,
      prefillMs: { cloud: cloud.prefillMs, device: local.prefillMs },
      kvImported: local.kvImported,
      kv: this.kv.report(),
      refinement: local.refinement,
      cloudTokenIds: cloud.received.slice(0, cloudShown).map((t) => t.id),
      deviceTokenIds: local.deviceIds,
      ...(cloud.failed ? { fallbackReason: cloud.failed } : {}),
      ...(local.tpotMs !== undefined ? { localDecodeMs: local.tpotMs } : {}),
      ...(cloud.promptTokens ? { cloudPromptTokens: cloud.promptTokens } : {}),
      ...(cloud.decodeTokPerS ? { cloudDecodeTokPerS: cloud.decodeTokPerS } : {}),
      ...(cloud.endReason !== undefined ? { endReason: EndReason[cloud.endReason] } : {}),
    };
  }
}

/** The request as the planner shaped it: KV when the models match and it pays, else refinement if asked. */
function prefillRequest(requestId: number, prompt: string, o: RunOptions, wantKv: boolean): PrefillRequest {
  const refineRatio = wantKv ? undefined : o.refineRatio;
  return create(PrefillRequestSchema, {
    requestId,
    prompt: { case: "text", value: prompt },
    sampling: {
      temperature: o.sampling?.temperature ?? 0,
      topK: o.sampling?.topK ?? 0,
      topP: o.sampling?.topP ?? 0,
      seed: BigInt(o.sampling?.seed ?? 0),
    },
    maxTokens: o.maxTokens,
    cloudTokenBudget: Math.max(1, Math.min(o.cloudBudget, o.maxTokens)),
    kv: wantKv
      ? { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 1 << 20, initialCreditBytes: 8n << 20n }
      : undefined,
    refine:
      refineRatio !== undefined
        ? { method: RefineMethod.SURPRISAL_DROP, targetRatio: refineRatio, minKeepTokens: 4, keepTailTokens: 8 }
        : undefined,
    targetTpotUs: Math.round(o.targetTpotMs * 1000),
  });
}
