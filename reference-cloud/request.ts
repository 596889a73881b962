/**
 * One request at the reference cloud (spec §4.2), in named steps:
 *
 *   validate ──▶ admit ──────────────────▶ prefill ─────────────▶ decode loop ──▶ finish
 *   (validate.ts)  Accepted, queue, sequence  refined prompt if granted  (decode-loop.ts)  free, then [Error] End
 *
 * A halt (Takeover, Cancel, connection loss, a request error, shutdown, the
 * duration limit) aborts one signal that every wait of the request listens
 * to: the queue, the paced wait between tokens, the KV credit and grace
 * waits. End then follows within one event-loop turn plus transport time.
 * Every frame passes the cloud state machine before it is sent.
 */
import { create } from "@bufbuild/protobuf";
import {
  CloudFrameSchema,
  CloudRequestState,
  EndReason,
  ErrorCode,
  KvFormat,
  PddError,
  RefineMethod,
  type CloudFrame,
  type ModelIdentity,
  type PrefillRequest,
} from "../proto/index.js";
import type { InferenceSlot as Slot } from "../engine/index.js";
import type { CloudContext } from "./context.js";
import { DecodeLoop, usSince } from "./decode-loop.js";
import { scorerIdentity } from "./identity.js";
import { KvTransfer, kvChunkBytes } from "./kv-sender.js";
import { surprisalDrop } from "./refine.js";
import type { AdmissionTicket } from "./scheduler.js";
import { refineWithDefaults, validateRequest, type RequestPlan } from "./validate.js";
import { limitTimer } from "./wait.js";

/** How long End waits for a KV transfer that the device is still taking. */
const KV_GRACE_MS = 10_000;

export interface RequestHost {
  send(frame: CloudFrame, bulk?: { last: boolean }): Promise<void>;
  abortBulk(requestId: number): void;
  /** The request gave back its sequence, before its End: what the connection counts for it is free too. */
  released(): void;
  /** A valid request takes its place among the live ones; throws RESOURCE_EXHAUSTED when there is none (PDD-LIMIT-004). */
  claim(): void;
  deviceModel: ModelIdentity | undefined;
  /** The connection's negotiated minor version (PDD-VER-007). */
  minor: number;
  maxFrameBytes: number;
}

export type StopReason = { kind: "takeover"; index: number } | { kind: "cancel" } | { kind: "error"; error: PddError };

type Usage = { promptTokens?: number; decoded?: number; queueUs?: number; prefillUs?: number; decodeUs?: number };

/** How a request ends: End's reason, token_count and usage, after an Error frame when there is one. */
interface Outcome {
  reason: EndReason;
  tokenCount: number;
  usage: Usage;
  error?: PddError;
}

export class CloudRequest {
  readonly id: number;
  readonly state: CloudRequestState;
  /** Resolves when the request has sent End (or was never accepted). */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly receivedAt = performance.now();
  // Halt: the first reason wins; every wait of the request listens to the signal.
  private stop: StopReason | undefined;
  private readonly halted = new AbortController();
  // What the request holds, given back before End (free).
  private ticket: AdmissionTicket | undefined;
  private slot: Slot | undefined;
  private freed = false;
  private kv: KvTransfer | undefined;
  private ended = false;

  constructor(
    private readonly ctx: CloudContext,
    private readonly host: RequestHost,
    private readonly req: PrefillRequest,
  ) {
    this.id = req.requestId;
    this.state = new CloudRequestState(req.requestId, {
      maxTokens: req.maxTokens,
      kvCredit: req.kv?.initialCreditBytes ?? 0n,
    });
    this.done = new Promise((r) => (this.resolveDone = r));
    ctx.requests.add(this);
    void this.done.then(() => ctx.requests.delete(this));
  }

  get live(): boolean {
    return !this.ended;
  }

  /** A device frame for this request (takeover, cancel, credit, progress). */
  onFrame(frame: Parameters<CloudRequestState["receive"]>[0]): void {
    const action = this.state.receive(frame); // throws PROTOCOL_VIOLATION (PDD-TAKEOVER-006)
    if (action.kind === "takeover") this.halt({ kind: "takeover", index: action.index });
    else if (action.kind === "cancel") this.halt({ kind: "cancel" });
    else if (action.kind === "credit") this.kv?.credited();
    else if (action.kind === "kv-abort") this.abandonKv();
  }

  /** The device gave the KV image up (KvAbort): no further chunk, the tokens go on (PDD-KV-019). */
  private abandonKv(): void {
    if (!this.kv) return;
    this.kv.abandon();
    this.host.abortBulk(this.id); // WebTransport: reset the request's KV stream with CANCELLED
  }

  /** Stops the request from outside: takeover, cancel, connection loss, limits, shutdown. */
  halt(reason: StopReason): void {
    if (this.stop) return;
    this.stop = reason;
    this.ticket?.cancel();
    this.host.abortBulk(this.id);
    this.halted.abort();
  }

  /** Refuses the request without running it: Error, then End. */
  async refuse(error: PddError): Promise<void> {
    await this.end({ reason: EndReason.ERROR, tokenCount: 0, usage: {}, error }).catch(() => undefined);
    this.resolveDone();
  }

  /** Runs the request to its End. Never throws. */
  async run(): Promise<void> {
    const { limits } = this.ctx.config;
    const limit = limitTimer(limits.maxRequestDurationMs - (performance.now() - this.receivedAt), () =>
      this.halt({
        kind: "error",
        error: new PddError(ErrorCode.TIMEOUT, `request ran past ${limits.maxRequestDurationMs} ms (PDD-ORD-006)`, {
          retryable: true,
        }),
      }),
    );
    try {
      await this.serve();
    } catch (e) {
      const err = PddError.from(e);
      if (!this.ended) {
        if (err.local !== "ERR_CLOSED") this.ctx.log.warn("request failed", { requestId: this.id, error: err.message });
        this.kv?.abandon(); // after Error only End (PDD-ORD-004)
        // The tokens sent before the Error stand (PDD-MSG-014).
        await this.finish({ reason: EndReason.ERROR, tokenCount: this.state.sent, usage: {}, error: err }).catch(
          () => undefined,
        );
      }
    } finally {
      clearTimeout(limit);
      await this.free();
      this.resolveDone();
    }
  }

  /** The steps, in order; a halt between two of them goes straight to finish. */
  private async serve(): Promise<void> {
    const plan = this.validate();
    this.host.claim(); // capacity after validation (PDD-REQ-007 step 8)
    this.ctx.log.debug("request started", {
      requestId: this.id,
      promptTokens: plan.prompt.length,
      budget: plan.budget,
      kv: plan.kv?.granted ?? false,
      refine: plan.refine?.granted ?? false,
    });
    const admitted = await this.admit(plan);
    if (!admitted) return this.finish(this.outcome(plan.budgetEnd, {})); // stopped while queued
    const { slot, queueUs } = admitted;
    if (this.stop) return this.finish(this.outcome(plan.budgetEnd, { queueUs }));
    const prefillStartedAt = performance.now();
    const prefilled = await this.prefill(plan, slot);
    const usage = { promptTokens: prefilled, queueUs, prefillUs: usSince(prefillStartedAt) };
    if (this.stop) return this.finish(this.outcome(plan.budgetEnd, usage));
    const d = await new DecodeLoop({
      engine: this.ctx.engine,
      slot,
      metrics: this.ctx.metrics,
      decodePace: this.ctx.config.decodePace,
      req: this.req,
      budget: plan.budget,
      promptTokens: plan.prompt.length,
      receivedAt: this.receivedAt,
      prefillStartedAt,
      queueUs,
      halted: this.halted.signal,
      sent: () => this.state.sent,
      send: (f) => this.send(f),
      kv: this.kv,
    }).run();
    // The image is already exported: the sequence serves others while the device takes the rest (issue 13, item 3).
    await this.free();
    await this.kv?.settle(KV_GRACE_MS);
    const { prefillUs, decodeUs, decoded } = d;
    const natural = d.eos ? EndReason.EOS : plan.budgetEnd;
    return this.finish(
      this.outcome(natural, { promptTokens: plan.prompt.length, decoded, queueUs, prefillUs, decodeUs }),
    );
  }

  /** Step 1: what the request will be served with; throws what a refused request gets. */
  private validate(): RequestPlan {
    const plan = validateRequest(this.req, {
      engine: this.ctx.engine,
      limits: this.ctx.config.limits,
      deviceModel: this.host.deviceModel,
      minor: this.host.minor,
      draining: this.ctx.draining(),
    });
    if (plan.kv?.granted) {
      const limits = this.ctx.config.limits;
      this.kv = new KvTransfer({
        requestId: this.id,
        chunkBytes: kvChunkBytes(this.req.kv?.maxChunkBytes ?? 0, limits.maxKvChunkBytes, this.host.maxFrameBytes),
        credit: () => this.state.kvCredit,
        send: async (frame, last) => {
          await this.send(frame, { last });
          this.ctx.metrics.kvBytes.inc(frame.body.case === "kvChunk" ? frame.body.value.data.length : 0);
        },
        halted: this.halted.signal,
        abortBulk: () => this.host.abortBulk(this.id),
      });
    }
    return plan;
  }

  /**
   * Step 2: Accepted, a place in the queue (RESOURCE_EXHAUSTED when full,
   * PDD-LIMIT-004), then a sequence. Returns it and the µs queued, or undefined
   * when the request was stopped while queued: it is never prefilled (PDD-CANCEL-003).
   */
  private async admit(plan: RequestPlan): Promise<{ slot: Slot; queueUs: number } | undefined> {
    const { ctx } = this;
    // From here on free() gives the ticket back, whatever fails next (the Accepted send to a gone peer included).
    const admission = ctx.admission.admit(this.req.priority);
    this.ticket = admission;
    if (this.stop) admission.cancel(); // halted before it queued
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "accepted",
          value: {
            requestId: this.id,
            queuePosition: admission.position,
            promptTokens: plan.prompt.length,
            cloudTokenBudget: plan.budget,
            kv: plan.kv,
            refine: plan.refine,
            kvFormat: plan.kv?.granted ? KvFormat.LLAMA_SEQ_STATE : KvFormat.UNSPECIFIED,
          },
        },
      }),
    );
    try {
      await admission.granted;
    } catch {
      return undefined;
    }
    const slot = await ctx.engine.acquire();
    this.slot = slot;
    ctx.metrics.engineBusy.set(ctx.engine.busy);
    const queueUs = usSince(this.receivedAt);
    if (this.req.deadlineMs > 0 && queueUs / 1000 > this.req.deadlineMs) {
      throw new PddError(
        ErrorCode.DEADLINE_EXCEEDED,
        `queued ${Math.round(queueUs / 1000)} ms, past the ${this.req.deadlineMs} ms deadline (PDD-REQ-006)`,
        { retryable: true },
      );
    }
    return { slot, queueUs };
  }

  /** Step 3: prefills the prompt (a halt stops it at a chunk's end); returns the tokens prefilled. */
  private async prefill(plan: RequestPlan, slot: Slot): Promise<number> {
    const refine = plan.refine?.granted === true;
    const pre = await slot.prefill(plan.prompt, { surprisal: refine, onChunk: () => !this.stop });
    this.ctx.metrics.promptTokens.inc(pre.done);
    if (!this.stop && refine && pre.surprisal) await this.sendRefinement(plan.prompt, pre.surprisal);
    return pre.done;
  }

  private async sendRefinement(prompt: number[], surprisal: Float64Array): Promise<void> {
    const r = refineWithDefaults(this.req.refine!, this.host.minor);
    const ref = surprisalDrop(prompt, surprisal, {
      targetRatio: r.targetRatio,
      minKeepTokens: r.minKeepTokens,
      keepTailTokens: r.keepTailTokens,
    });
    const keptIds = ref.kept.flatMap((s) => prompt.slice(s.start, s.end));
    const text = Buffer.from(this.ctx.engine.bytes(keptIds)).toString("utf8");
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "refinedPrompt",
          value: {
            requestId: this.id,
            method: RefineMethod.SURPRISAL_DROP,
            kept: ref.kept,
            text,
            originalTokens: prompt.length,
            keptTokens: ref.keptTokens,
            ratio: ref.ratio,
            scorer: scorerIdentity(this.ctx.engine, this.host.minor),
          },
        },
      }),
    );
  }

  /** How the request ends: by its halt when it was halted, else `natural` (EOS, or its budget spent). */
  private outcome(natural: EndReason, usage: Usage): Outcome {
    const sent = this.state.sent;
    switch (this.stop?.kind) {
      case "error":
        return { reason: EndReason.ERROR, tokenCount: sent, usage, error: this.stop.error };
      case "takeover":
        return { reason: EndReason.TAKEN_OVER, tokenCount: this.stop.index, usage };
      case "cancel":
        return { reason: EndReason.CANCELLED, tokenCount: sent, usage };
      default:
        return { reason: natural, tokenCount: sent, usage };
    }
  }

  /** Step 5: the sequence and the admission slot go back before End is sent (PDD-TAKEOVER-005). */
  private async finish(o: Outcome): Promise<void> {
    await this.free();
    await this.end(o);
  }

  /** Gives back what the request holds; idempotent. */
  private async free(): Promise<void> {
    if (this.freed) return;
    this.freed = true;
    const { ctx } = this;
    if (this.slot) {
      await this.slot.release().catch(() => undefined);
      ctx.metrics.engineBusy.set(ctx.engine.busy);
      ctx.metrics.sequencesFreed.inc({ reason: this.stop?.kind ?? "ended" });
    }
    this.ticket?.leave();
    this.host.released();
  }

  /** [Error,] End: the request's last frames. */
  private async end(o: Outcome): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const { metrics } = this.ctx;
    try {
      if (o.error) {
        metrics.errors.inc({ code: ErrorCode[o.error.code] ?? String(o.error.code) });
        const { code, rawMessage: message, retryable } = o.error;
        await this.send(
          create(CloudFrameSchema, {
            body: { case: "error", value: { requestId: this.id, code, message, retryable } },
          }),
        );
      }
      metrics.requests.inc({ end: EndReason[o.reason] ?? String(o.reason) });
      this.ctx.log.debug("request ended", {
        requestId: this.id,
        end: EndReason[o.reason] ?? o.reason,
        tokens: this.state.sent,
        ...(this.stop ? { stop: this.stop.kind } : {}),
        ...(o.error ? { error: ErrorCode[o.error.code] ?? o.error.code } : {}),
      });
      const u = o.usage;
      await this.send(
        create(CloudFrameSchema, {
          body: {
            case: "end",
            value: {
              requestId: this.id,
              reason: o.reason,
              tokenCount: o.tokenCount,
              usage: {
                promptTokens: u.promptTokens ?? 0,
                decodedTokens: u.decoded ?? 0,
                sentTokens: this.state.sent,
                kvBytesSent: this.state.kvSent,
                queueUs: u.queueUs ?? 0,
                prefillUs: u.prefillUs ?? 0,
                decodeUs: u.decodeUs ?? 0,
              },
            },
          },
        }),
      );
    } catch {
      // the connection is gone; nothing to tell
    } finally {
      this.resolveDone();
    }
  }

  private async send(frame: CloudFrame, bulk?: { last: boolean }): Promise<void> {
    this.state.beforeSend(frame); // a bug here never reaches the wire
    await this.host.send(frame, bulk);
  }
}
