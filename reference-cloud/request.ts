/**
 * One request at the reference cloud (spec §4.2): admission, prefill, the
 * first-token handoff, token streaming up to the budget, KV chunks and
 * refinement when granted, and an immediate stop on takeover or cancel.
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
import { sameBytes, type InferenceSlot as Slot } from "../engine/index.js";
import type { CloudContext } from "./context.js";
import { sendKvImage } from "./kv-sender.js";
import { surprisalDrop } from "./refine.js";

/** Rough cost of saving a sequence state, ms: its size at ~100 MB/s (measured: 75 MB in ~0.8 s). */
function estimateKvMs(engine: { kvBytesPerToken: number }, positions: number): number {
  return (positions * engine.kvBytesPerToken) / 100_000;
}

/** How long End waits for a KV transfer that the device is still taking. */
const KV_GRACE_MS = 10_000;

const us = (fromMs: number) => Math.max(0, Math.round((performance.now() - fromMs) * 1000));

export interface RequestHost {
  send(frame: CloudFrame, bulk?: { last: boolean }): Promise<void>;
  abortBulk(requestId: number): void;
  deviceModel: ModelIdentity | undefined;
  maxFrameBytes: number;
}

export class CloudRequest {
  readonly id: number;
  readonly state: CloudRequestState;
  private stop:
    | { kind: "takeover"; index: number }
    | { kind: "cancel" }
    | { kind: "error"; error: PddError }
    | undefined;
  private wake: (() => void) | undefined;
  private cancelQueued: (() => void) | undefined;
  private readonly receivedAt = performance.now();
  private ended = false;
  private kvAbandoned = false;
  /** Resolves when the request has sent End (or was never accepted). */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

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
    else if (action.kind === "credit") this.wake?.();
  }

  /** Stops the request from outside: takeover, cancel, connection loss, limits. */
  halt(reason: NonNullable<CloudRequest["stop"]>): void {
    if (this.stop) return;
    this.stop = reason;
    this.cancelQueued?.();
    this.host.abortBulk(this.id);
    this.wake?.();
  }

  private async send(frame: CloudFrame, bulk?: { last: boolean }): Promise<void> {
    this.state.beforeSend(frame); // a bug here never reaches the wire
    await this.host.send(frame, bulk);
  }

  private async fail(error: PddError): Promise<void> {
    this.ctx.metrics.errors.inc({ code: ErrorCode[error.code] ?? String(error.code) });
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "error",
          value: { requestId: this.id, code: error.code, message: error.rawMessage, retryable: error.retryable },
        },
      }),
    );
    await this.finish(EndReason.ERROR, 0, {});
  }

  private async finish(
    reason: EndReason,
    tokenCount: number,
    usage: { promptTokens?: number; decoded?: number; queueUs?: number; prefillUs?: number; decodeUs?: number },
  ): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.ctx.metrics.requests.inc({ end: EndReason[reason] ?? String(reason) });
    try {
      await this.send(
        create(CloudFrameSchema, {
          body: {
            case: "end",
            value: {
              requestId: this.id,
              reason,
              tokenCount,
              usage: {
                promptTokens: usage.promptTokens ?? 0,
                decodedTokens: usage.decoded ?? 0,
                sentTokens: this.state.sent,
                kvBytesSent: this.state.kvSent,
                queueUs: usage.queueUs ?? 0,
                prefillUs: usage.prefillUs ?? 0,
                decodeUs: usage.decodeUs ?? 0,
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

  /** Refuses the request without running it: Error, then End. */
  async refuse(error: PddError): Promise<void> {
    await this.fail(error).catch(() => undefined);
    this.resolveDone();
  }

  /** Runs the request to its End. Never throws. */
  async run(): Promise<void> {
    let slot: Slot | undefined;
    try {
      await this.serve((s) => (slot = s));
    } catch (e) {
      const err = PddError.from(e);
      if (!this.ended) {
        if (err.local !== "ERR_CLOSED") this.ctx.log.warn("request failed", { requestId: this.id, error: err.message });
        await this.fail(err).catch(() => undefined);
      }
    } finally {
      if (slot) {
        await slot.release().catch(() => undefined);
        this.ctx.admission.release();
        this.ctx.metrics.sequencesFreed.inc({ reason: this.stop?.kind ?? "ended" });
      }
      this.resolveDone();
    }
  }

  private async serve(hold: (s: Slot) => void): Promise<void> {
    const { ctx, req } = this;
    const { engine, config } = ctx;
    const limits = config.limits;
    // Validation (PDD-REQ-*): refused requests get Error + End, nothing else.
    if (ctx.draining()) throw new PddError(ErrorCode.UNAVAILABLE, "cloud is draining", { retryable: true });
    if (req.cloudTokenBudget < 1)
      throw new PddError(ErrorCode.INVALID_ARGUMENT, "cloud_token_budget must be at least 1 (PDD-REQ-004)");
    let prompt: number[];
    if (req.prompt.case === "text") {
      if (req.prompt.value.length === 0) throw new PddError(ErrorCode.INVALID_ARGUMENT, "empty prompt (PDD-REQ-003)");
      prompt = engine.tokenize(req.prompt.value);
    } else if (req.prompt.case === "tokens") {
      const dm = this.host.deviceModel;
      if (!dm || !sameBytes(dm.tokenizerFingerprint, engine.info.tokenizerFingerprint)) {
        throw new PddError(ErrorCode.TOKENIZER_MISMATCH, "token-id prompts need the cloud's tokenizer (PDD-REQ-002)");
      }
      prompt = [...req.prompt.value.ids];
      if (prompt.length === 0) throw new PddError(ErrorCode.INVALID_ARGUMENT, "empty prompt (PDD-REQ-003)");
      if (prompt.some((t) => t >= engine.info.vocabSize))
        throw new PddError(ErrorCode.INVALID_ARGUMENT, "token id outside the vocabulary");
    } else {
      throw new PddError(ErrorCode.INVALID_ARGUMENT, "no prompt (PDD-REQ-003)");
    }
    const maxPrompt = Math.min(limits.maxPromptTokens ?? engine.contextSize, engine.contextSize - 1);
    if (prompt.length > maxPrompt)
      throw new PddError(
        ErrorCode.PROMPT_TOO_LONG,
        `prompt has ${prompt.length} tokens; the limit is ${maxPrompt} (PDD-LIMIT-003)`,
      );

    let budget = Math.min(req.cloudTokenBudget, limits.maxCloudTokenBudget, engine.contextSize - prompt.length);
    if (req.maxTokens > 0) budget = Math.min(budget, req.maxTokens);
    const kvGrant = req.kv ? this.kvGrant() : undefined;
    const refineGrant = req.refine ? this.refineGrant() : undefined;
    const admission = ctx.admission.admit(req.priority); // RESOURCE_EXHAUSTED when full (PDD-LIMIT-004)
    this.cancelQueued = admission.cancel;
    await this.send(
      create(CloudFrameSchema, {
        body: {
          case: "accepted",
          value: {
            requestId: this.id,
            queuePosition: admission.position,
            promptTokens: prompt.length,
            cloudTokenBudget: budget,
            kv: kvGrant,
            refine: refineGrant,
            kvFormat: kvGrant?.granted ? KvFormat.LLAMA_SEQ_STATE : KvFormat.UNSPECIFIED,
          },
        },
      }),
    );
    try {
      await admission.granted;
    } catch {
      // cancelled while queued: never prefilled (PDD-CANCEL-003)
      return this.finish(this.stopReason(), 0, {});
    }
    const slot = await engine.acquire();
    hold(slot);
    ctx.metrics.activeSequences.set(engine.busy);
    const queueUs = us(this.receivedAt);
    if (req.deadlineMs > 0 && queueUs / 1000 > req.deadlineMs) {
      throw new PddError(
        ErrorCode.DEADLINE_EXCEEDED,
        `queued ${Math.round(queueUs / 1000)} ms, past the ${req.deadlineMs} ms deadline (PDD-REQ-006)`,
        { retryable: true },
      );
    }
    if (this.stop) return this.finish(this.stopReason(), 0, { queueUs });

    // Prefill, with surprisal only when a refinement was granted.
    const t0 = performance.now();
    const pre = await slot.prefill(prompt, { surprisal: refineGrant?.granted === true, onChunk: () => !this.stop });
    ctx.metrics.promptTokens.inc(pre.done);
    if (this.stop) return this.finish(this.stopReason(), 0, { promptTokens: pre.done, queueUs, prefillUs: us(t0) });
    if (refineGrant?.granted && pre.surprisal) await this.sendRefinement(prompt, pre.surprisal);

    const sampling = {
      temperature: req.sampling?.temperature ?? 0,
      topK: req.sampling?.topK,
      topP: req.sampling?.topP,
      seed: req.sampling ? Number(req.sampling.seed) : undefined,
    };
    const gen = slot.generate(sampling, budget);
    let decoded = 0;
    let prefillUs = 0;
    let reason: EndReason =
      budget === req.maxTokens && req.maxTokens > 0 && budget < req.cloudTokenBudget
        ? EndReason.MAX_TOKENS
        : EndReason.BUDGET_EXHAUSTED;
    let kvTransfer: Promise<number> | undefined;
    let tFirstSent = 0;
    // Saving a KV image pauses decoding (~10 ms per MB measured on CPU); export
    // once the device holds enough tokens to cover twice that pause.
    const kvAfter = Math.max(
      0,
      Math.min(
        budget - 1,
        Math.ceil((2 * estimateKvMs(engine, prompt.length)) / Math.max(1, req.targetTpotUs / 1000 || 40)),
      ),
    );
    const tDecode = performance.now();
    try {
      for (;;) {
        if (this.stop) break;
        const r = await gen.next();
        if (r.done) break;
        decoded++;
        ctx.metrics.decodedTokens.inc();
        if (this.stop) break; // decoded, but it must not be sent (PDD-TAKEOVER-004)
        const token = r.value;
        if (engine.isEndOfGeneration(token)) {
          reason = EndReason.EOS; // PDD-MSG-010: the EOS token is not sent
          break;
        }
        const wire = { id: token, piece: engine.pieces[token] ?? new Uint8Array() };
        if (req.targetTpotUs > 0 && config.decodePace > 0 && this.state.sent > 0) {
          // Pace at decodePace × the device's display rate (target_tpot_us is a
          // hint): ahead of the display, never burning compute on tokens a
          // takeover would discard (decodePace 0: no pacing, config.ts).
          const due = tFirstSent + (this.state.sent * req.targetTpotUs) / (1000 * config.decodePace);
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          if (this.stop) break;
        }
        if (this.state.sent === 0) {
          if (req.deadlineMs > 0 && performance.now() - this.receivedAt > req.deadlineMs) {
            // Never a FirstToken past the deadline (PDD-REQ-006).
            throw new PddError(
              ErrorCode.DEADLINE_EXCEEDED,
              `the first token was ready ${Math.round(performance.now() - this.receivedAt)} ms after receipt, past the ${req.deadlineMs} ms deadline (PDD-REQ-006)`,
              { retryable: true },
            );
          }
          prefillUs = us(t0);
          tFirstSent = performance.now();
          await this.send(
            create(CloudFrameSchema, {
              body: { case: "firstToken", value: { requestId: this.id, token: wire, queueUs, prefillUs } },
            }),
          );
          ctx.metrics.firstToken.observe((performance.now() - this.receivedAt) / 1000);
        } else {
          await this.send(
            create(CloudFrameSchema, {
              body: { case: "tokenBatch", value: { requestId: this.id, startIndex: this.state.sent, tokens: [wire] } },
            }),
          );
        }
        ctx.metrics.sentTokens.inc();
        if (kvGrant?.granted && !kvTransfer && this.state.sent - 1 >= kvAfter) {
          // The image covers the prompt and the answer tokens sent before this
          // one (PDD-KV-012): the device's buffer hides the export's pause.
          const covered = this.state.sent - 1;
          kvTransfer = this.startKv(await slot.exportState(), prompt.length + covered);
        }
        if (performance.now() - this.receivedAt > config.limits.maxRequestDurationMs) {
          this.halt({
            kind: "error",
            error: new PddError(
              ErrorCode.TIMEOUT,
              `request ran past ${config.limits.maxRequestDurationMs} ms (PDD-ORD-006)`,
              { retryable: true },
            ),
          });
        }
      }
    } finally {
      await gen.return(undefined);
    }
    const decodeUs = us(tDecode);
    if (kvTransfer) {
      // On a single stream, End must follow the last chunk (PDD-KV-010); give
      // the device a while to take the rest, then abandon the transfer.
      const grace = new Promise<void>((r) => setTimeout(r, KV_GRACE_MS).unref());
      await Promise.race([kvTransfer, grace]);
      this.kvAbandoned = true;
      this.wake?.();
      await kvTransfer;
    }
    // The sequence goes back before End is sent (PDD-TAKEOVER-005).
    await slot.release();
    const usage = { promptTokens: prompt.length, decoded, queueUs, prefillUs, decodeUs };
    const stop = this.stop as CloudRequest["stop"];
    if (stop?.kind === "error") {
      const err = stop.error;
      ctx.metrics.errors.inc({ code: ErrorCode[err.code] ?? String(err.code) });
      await this.send(
        create(CloudFrameSchema, {
          body: {
            case: "error",
            value: { requestId: this.id, code: err.code, message: err.rawMessage, retryable: err.retryable },
          },
        }),
      );
      return this.finish(EndReason.ERROR, this.state.sent, usage);
    }
    if (stop?.kind === "takeover") return this.finish(EndReason.TAKEN_OVER, stop.index, usage);
    if (stop?.kind === "cancel") return this.finish(EndReason.CANCELLED, this.state.sent, usage);
    return this.finish(reason, this.state.sent, usage);
  }

  private stopReason(): EndReason {
    return this.stop?.kind === "takeover" ? EndReason.TAKEN_OVER : EndReason.CANCELLED;
  }

  private kvGrant() {
    const kv = this.req.kv!;
    const dm = this.host.deviceModel;
    if (kv.format !== KvFormat.LLAMA_SEQ_STATE)
      return {
        granted: false,
        refusal: ErrorCode.UNSUPPORTED_FEATURE,
        detail: "only KV_FORMAT_LLAMA_SEQ_STATE is implemented",
      };
    if (!dm || !sameBytes(dm.modelFingerprint, this.ctx.engine.info.modelFingerprint)) {
      return { granted: false, refusal: ErrorCode.MODEL_MISMATCH, detail: "model fingerprints differ (PDD-KV-001)" };
    }
    return { granted: true, refusal: ErrorCode.UNSPECIFIED, detail: "" };
  }

  private refineGrant() {
    const r = this.req.refine!;
    if (r.method !== RefineMethod.SURPRISAL_DROP)
      return {
        granted: false,
        refusal: ErrorCode.UNSUPPORTED_FEATURE,
        detail: "only REFINE_METHOD_SURPRISAL_DROP is implemented",
      };
    if (!(r.targetRatio > 0 && r.targetRatio <= 1))
      return { granted: false, refusal: ErrorCode.INVALID_ARGUMENT, detail: "target_ratio must be in (0, 1]" };
    return { granted: true, refusal: ErrorCode.UNSPECIFIED, detail: "" };
  }

  private async sendRefinement(prompt: number[], surprisal: Float64Array): Promise<void> {
    const r = this.req.refine!;
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
          },
        },
      }),
    );
  }

  private startKv(image: Uint8Array, tokenCount: number): Promise<number> {
    const limits = this.ctx.config.limits;
    const asked = this.req.kv!.maxChunkBytes;
    // Room for the frame's other fields within the device's frame limit (PDD-LIMIT-006).
    const chunkBytes = Math.max(
      1024,
      Math.min(asked > 0 ? asked : limits.maxKvChunkBytes, limits.maxKvChunkBytes, this.host.maxFrameBytes - 256),
    );
    return sendKvImage({
      requestId: this.id,
      image,
      tokenCount,
      chunkBytes,
      credit: () => this.state.kvCredit,
      waitForCredit: () => new Promise<void>((r) => (this.wake = r)),
      stopped: () => this.stop !== undefined || this.kvAbandoned,
      send: async (frame, last) => {
        await this.send(frame, { last });
        this.ctx.metrics.kvBytes.inc(frame.body.case === "kvChunk" ? frame.body.value.data.length : 0);
      },
    }).catch(() => 0);
  }
}
