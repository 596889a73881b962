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
 */
import { create } from "@bufbuild/protobuf";
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import {
  DeviceFrameSchema,
  DeviceRequestState,
  EndReason,
  ErrorCode,
  KvFormat,
  PddError,
  RefineMethod,
  type CloudFrame,
  type DeviceFrame,
  type RefinedPrompt,
} from "../proto/index.js";
import {
  sameBytes,
  type InferenceEngine as Engine,
  type InferenceSlot as Slot,
  type Sampling,
} from "../engine/index.js";
import type { CloudLink } from "./cloud-link.js";
import { SpeedController } from "./speed-controller.js";
import { completeUtf8Prefix } from "./utf8.js";

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

const sleep = (ms: number) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());

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

interface Shown {
  piece: Uint8Array;
  source: "cloud" | "device";
}

export class DeviceRun {
  private readonly t0 = performance.now();
  private readonly state: DeviceRequestState | undefined;
  private readonly requestId: number | undefined;
  private readonly controller: SpeedController;
  private readonly sameTokenizer: boolean;
  private readonly sameModel: boolean;
  // Cloud side
  private received: { id: number; piece: Uint8Array }[] = [];
  private cloudEnded = false;
  private cloudFailed: string | undefined;
  private cloudEndReason: EndReason | undefined;
  private cloudPrefillMs: number | null = null;
  private grantedBudget = 0;
  private kvGranted = false;
  private kvAsked = false;
  private kvRefusal: string | undefined;
  /** Bytes shown from the cloud that the device's context lacks (a partial UTF-8 character at the seam). */
  private seamBytes: Uint8Array = new Uint8Array();
  private kvChunks: Uint8Array[] = [];
  private kvHash = createHash("sha256");
  private kvState: "none" | "receiving" | "ready" | "failed" = "none";
  private kvImage: Uint8Array | undefined;
  /** Positions the KV image covers (prompt + answer tokens, PDD-KV-012). */
  private kvPositions = 0;
  private cloudPromptTokens = 0;
  private cloudDecodeTokPerS: number | undefined;
  private refined: RefinedPrompt | undefined;
  private takeoverSent: number | undefined;
  private takeoverOnWire = false;
  // Display
  private queue: Shown[] = [];
  private shownCloud = 0;
  private displayTimes: number[] = [];
  private stalls = 0;
  private shownBytes: Uint8Array[] = [];
  private decoder = new TextDecoder("utf-8");
  private wakeDisplay: (() => void) | undefined;
  private wakeWorker: (() => void) | undefined;
  private localDone = false;
  // Local side
  /** When the local model is expected to emit its first own token (performance.now() ms); a time, not a duration, so it never goes stale. */
  private localReadyAt: number | undefined = undefined;
  private localTpotMs: number | undefined;
  private prefillRate: number | undefined;
  private devicePrefillMs: number | null = null;
  private deviceIds: number[] = [];
  private kvImported = false;
  private refinementUsed: Report["refinement"] = null;

  constructor(
    private readonly engine: Engine,
    private readonly prompt: string,
    private readonly link: CloudLink | undefined,
    private readonly opts: RunOptions,
  ) {
    this.controller = new SpeedController(opts.targetTpotMs);
    const cm = link?.ack?.cloudModel;
    this.sameTokenizer = cm !== undefined && sameBytes(cm.tokenizerFingerprint, engine.info.tokenizerFingerprint);
    this.sameModel = cm !== undefined && sameBytes(cm.modelFingerprint, engine.info.modelFingerprint);
    if (link?.live) {
      this.requestId = link.register({ onFrame: (f) => this.onCloudFrame(f), onLost: (e) => this.onCloudLost(e) });
      this.state = new DeviceRequestState(this.prefillRequest().body.value as never);
    } else if (link) {
      this.cloudFailed = `cloud unavailable: ${link.lostWith?.message ?? "not connected"}`;
    }
  }

  private prefillRequest(): DeviceFrame {
    const wantKv = this.opts.useKv && this.sameModel;
    const wantRefine = this.opts.refineRatio !== undefined && !wantKv;
    return create(DeviceFrameSchema, {
      body: {
        case: "prefillRequest",
        value: {
          requestId: this.requestId ?? 0,
          prompt: { case: "text", value: this.prompt },
          sampling: {
            temperature: this.opts.sampling?.temperature ?? 0,
            topK: this.opts.sampling?.topK ?? 0,
            topP: this.opts.sampling?.topP ?? 0,
            seed: BigInt(this.opts.sampling?.seed ?? 0),
          },
          maxTokens: this.opts.maxTokens,
          cloudTokenBudget: Math.max(1, Math.min(this.opts.cloudBudget, this.opts.maxTokens)),
          kv: wantKv
            ? { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 1 << 20, initialCreditBytes: 8n << 20n }
            : undefined,
          refine: wantRefine
            ? {
                method: RefineMethod.SURPRISAL_DROP,
                targetRatio: this.opts.refineRatio!,
                minKeepTokens: 4,
                keepTailTokens: 8,
              }
            : undefined,
          targetTpotUs: Math.round(this.opts.targetTpotMs * 1000),
        },
      },
    });
  }

  private async sendToCloud(frame: DeviceFrame): Promise<void> {
    if (!this.link || this.cloudEnded || this.cloudFailed) return;
    try {
      this.state!.beforeSend(frame);
    } catch {
      return; // the state machine forbids this frame now (e.g. a Cancel after the request ended): it is not sent
    }
    await this.link.send(frame).catch((e: unknown) => this.onCloudLost(PddError.from(e)));
  }

  // ---------------------------------------------------------------- cloud

  private onCloudFrame(frame: CloudFrame): void {
    // After a request Error only its End comes (PDD-ORD-004), and it must still end the request.
    if (this.cloudEnded || (this.cloudFailed && frame.body.case !== "end")) return;
    let ev;
    try {
      ev = this.state!.receive(frame);
    } catch (e) {
      // PDD-SM-001: keep what was valid, stop using the cloud, finish locally.
      const err = PddError.from(e);
      void this.sendToCloud(
        create(DeviceFrameSchema, {
          body: {
            case: "cancel",
            value: { requestId: this.requestId!, code: ErrorCode.PROTOCOL_VIOLATION, reason: err.rawMessage },
          },
        }),
      );
      return this.onCloudLost(err);
    }
    switch (ev.kind) {
      case "accepted":
        this.grantedBudget = ev.accepted.cloudTokenBudget;
        this.cloudPromptTokens = ev.accepted.promptTokens;
        this.kvAsked = ev.accepted.kv !== undefined;
        this.kvGranted = ev.accepted.kv?.granted === true;
        if (ev.accepted.kv && !ev.accepted.kv.granted) this.kvRefusal = ErrorCode[ev.accepted.kv.refusal];
        if (this.kvGranted) this.kvState = "receiving";
        break;
      case "tokens": {
        if (ev.startIndex === 0 && this.cloudPrefillMs === null) {
          const ft = frame.body.case === "firstToken" ? frame.body.value : undefined;
          this.cloudPrefillMs = ft ? ft.prefillUs / 1000 : null;
        }
        for (const t of ev.tokens) {
          this.received.push({ id: t.id, piece: t.piece });
          if (this.takeoverSent === undefined) this.queue.push({ piece: t.piece, source: "cloud" });
        }
        break;
      }
      case "kv":
        this.kvPositions = ev.chunk.tokenCount;
        this.onKvChunk(
          ev.chunk.data,
          ev.chunk.crc32,
          ev.last ? ev.chunk.imageSha256 : undefined,
          Number(ev.chunk.totalBytes),
        );
        break;
      case "refined":
        this.refined = ev.refined;
        break;
      case "error":
        this.cloudFailed = `cloud error: ${ev.error.message}`;
        if (this.kvState === "receiving") this.kvState = "failed";
        break;
      case "end": {
        const u = ev.end.usage;
        if (u && u.decodeUs > 0 && u.decodedTokens >= 4) this.cloudDecodeTokPerS = (1e6 * u.decodedTokens) / u.decodeUs;
        this.cloudEnded = true;
        this.cloudEndReason = ev.end.reason;
        if (ev.end.reason === EndReason.ERROR && !this.cloudFailed)
          this.cloudFailed = "cloud ended the request with an error";
        if (this.kvState === "receiving") this.kvState = "failed";
        this.link?.unregister(this.requestId!);
        break;
      }
      default:
        break;
    }
    this.wakeDisplay?.();
    this.wakeWorker?.();
  }

  private onCloudLost(error: PddError): void {
    if (this.cloudEnded) return;
    this.cloudFailed ??= `cloud lost: ${error.message}`;
    this.cloudEnded = true;
    if (this.kvState === "receiving") this.kvState = "failed";
    this.wakeDisplay?.();
    this.wakeWorker?.();
  }

  private onKvChunk(data: Uint8Array, crc: number, sha: Uint8Array | undefined, total: number): void {
    if (this.kvState !== "receiving") return;
    if (crc32(data) !== crc) {
      this.kvState = "failed"; // PDD-KV-007: recompute instead
      return;
    }
    this.kvChunks.push(data);
    this.kvHash.update(data); // as chunks come: no long pause at the end
    // Return the credit as chunks are consumed (PDD-KV-009).
    void this.sendToCloud(
      create(DeviceFrameSchema, {
        body: { case: "kvCredit", value: { requestId: this.requestId!, bytes: BigInt(data.length) } },
      }),
    );
    if (sha) {
      const image = Buffer.concat(this.kvChunks);
      this.kvChunks = [];
      if (image.length !== total || !this.kvHash.digest().equals(Buffer.from(sha))) this.kvState = "failed";
      else {
        this.kvImage = image;
        this.kvState = "ready";
      }
      this.wakeWorker?.();
    }
  }

  // ---------------------------------------------------------------- display

  private show(item: Shown): void {
    const now = performance.now();
    this.displayTimes.push(now);
    this.shownBytes.push(item.piece);
    if (item.source === "cloud") this.shownCloud++;
    const text = this.decoder.decode(item.piece, { stream: true });
    if (text) this.opts.onText?.(text);
  }

  /** Shows queued tokens at the controller's pace until the answer is complete. */
  private async displayLoop(): Promise<void> {
    for (;;) {
      const item = this.queue.shift();
      if (!item) {
        if (this.localDone && this.queue.length === 0) return;
        const waitStart = performance.now();
        await new Promise<void>((r) => (this.wakeDisplay = r));
        this.wakeDisplay = undefined;
        // A gap over twice the target with tokens still to come is a stall.
        if (
          this.displayTimes.length > 0 &&
          performance.now() - waitStart > 2 * this.opts.targetTpotMs &&
          this.queue.length > 0
        )
          this.stalls++;
        continue;
      }
      this.show(item);
      if (this.queue.length === 0 && this.localDone) return;
      const delay = this.controller.nextDelay({
        buffered: this.queue.length,
        cloudRemaining:
          this.cloudEnded || this.takeoverSent !== undefined
            ? 0
            : Math.max(0, this.grantedBudget - this.received.length),
        // A budget that covers the whole answer needs no handover: nothing to stretch for.
        localEtaMs:
          this.grantedBudget >= this.opts.maxTokens || this.localReadyAt === undefined
            ? undefined
            : Math.max(0, this.localReadyAt - performance.now()),
        localTpotMs: this.localTpotMs,
        local: item.source === "device",
      });
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
  }

  // ---------------------------------------------------------------- local

  private async waitFor(cond: () => boolean): Promise<void> {
    while (!cond()) {
      await new Promise<void>((r) => (this.wakeWorker = r));
      this.wakeWorker = undefined;
    }
  }

  /** The device's prompt tokens: the refined prompt when it came in time and is worth it. */
  private refinedTokens(original: number[], progressed: number): number[] | undefined {
    const r = this.refined;
    if (!r || this.kvGranted) return undefined;
    const tokens = this.sameTokenizer
      ? r.kept.flatMap((s) => original.slice(s.start, s.end))
      : this.engine.tokenize(r.text);
    // Worth it only when the refined prompt is shorter than what is left to prefill.
    return tokens.length < original.length - progressed ? tokens : undefined;
  }

  /**
   * Ms per prefilled token for the display's estimate: the calibrated rate
   * (kept current across requests), else this prefill's own so far — which
   * early on counts the first chunk's start-up and overestimates.
   */
  private prefillMsPerToken(): number | undefined {
    return this.opts.prefillMsPerToken ?? (this.prefillRate ? 1000 / this.prefillRate : undefined);
  }

  private async localWork(slot: Slot): Promise<void> {
    if (this.opts.cloudOnly) {
      await this.waitFor(() => this.cloudEnded || this.cloudFailed !== undefined);
      this.takeoverSent = this.received.length;
      return;
    }
    const original = this.engine.tokenize(this.prompt);
    let promptTokens = original;
    const tPre = performance.now();
    // 1. Prefill the prompt in chunks, watching for a KV grant or a refined prompt.
    let done = 0;
    let switched = false;
    let coveredByKv = 0;
    const rate = () => (this.prefillRate = done / Math.max(1e-3, (performance.now() - tPre) / 1000));
    while (done < promptTokens.length) {
      if (this.kvState === "receiving") {
        await this.waitFor(() => this.kvState !== "receiving");
      }
      if (this.kvState === "ready" && this.kvImage) {
        const answerCovered = this.kvPositions - this.cloudPromptTokens;
        try {
          if (
            answerCovered < 0 ||
            answerCovered > this.received.length ||
            this.cloudPromptTokens !== promptTokens.length
          )
            throw new Error("image does not fit");
          const last =
            answerCovered > 0 ? this.received[answerCovered - 1]!.id : promptTokens[promptTokens.length - 1]!;
          await slot.importState(this.kvImage, this.link!.ack!.cloudModel!.modelFingerprint, last);
          this.kvImported = true;
          coveredByKv = answerCovered;
          done = promptTokens.length;
          break;
        } catch {
          this.kvState = "failed";
          await slot.reset();
          done = 0;
        }
      }
      if (!switched) {
        const r = this.refinedTokens(original, done);
        if (r) {
          switched = true;
          await slot.reset();
          promptTokens = r;
          done = 0;
          this.refinementUsed = { used: true, originalTokens: original.length, keptTokens: r.length };
        }
      }
      const step = promptTokens.slice(done, done + this.opts.prefillChunk);
      const res = await slot.prefill(step, { chunk: this.opts.prefillChunk });
      await sleep(step.length * (this.opts.emulate?.prefillMsPerToken ?? 0));
      done += res.done;
      rate();
      // Ready means the prompt and then the cloud's tokens (at most its budget) covered:
      // leaving the catch-up out let a long prompt's display run dry (1.2 s, found by the live replay).
      const catchUp = Math.min(this.grantedBudget, this.opts.maxTokens);
      const perToken = this.prefillMsPerToken();
      this.localReadyAt =
        perToken !== undefined
          ? performance.now() + (promptTokens.length - done + catchUp) * perToken + (this.localTpotMs ?? 0)
          : undefined;
    }
    this.devicePrefillMs = performance.now() - tPre;
    if (this.requestId !== undefined) {
      // Tell the cloud how this device is doing (informative, PDD-MSG-007): once per request.
      const decodeTokensPerS = 1000 / Math.max(1e-3, this.opts.decodeMsPerToken ?? 10);
      void this.sendToCloud(
        create(DeviceFrameSchema, {
          body: {
            case: "progress",
            value: {
              requestId: this.requestId,
              prefilledTokens: done,
              coveredIndex: Math.max(0, coveredByKv),
              displayedIndex: this.shownCloud,
              prefillTokensPerS: this.prefillRate ?? 0,
              decodeTokensPerS,
            },
          },
        }),
      );
    }
    if (this.refined && !this.refinementUsed)
      this.refinementUsed = { used: false, originalTokens: original.length, keptTokens: this.refined.keptTokens };

    // 2. Catch up over the cloud tokens received meanwhile (amortized prefill).
    let covered = coveredByKv;
    const evalCloud = async (upTo: number) => {
      const emulated = (n: number) => sleep(n * (this.opts.emulate?.prefillMsPerToken ?? 0));
      if (this.sameTokenizer) {
        await slot.prefill(this.received.slice(covered, upTo).map((t) => t.id));
        await emulated(upTo - covered);
        covered = upTo;
        return;
      }
      // Another tokenizer: re-tokenize the cloud's text, whole characters only.
      // The longest run of tokens from `covered` whose bytes end on a character boundary.
      const bytesTo = (e: number) => Buffer.concat(this.received.slice(covered, e).map((t) => t.piece));
      let end = upTo;
      let bytes = bytesTo(end);
      while (end > covered && completeUtf8Prefix(bytes) < bytes.length) bytes = bytesTo(--end);
      if (end === covered) return;
      const text = bytes.toString("utf8");
      const ids = this.engine.tokenizeContinuation(text);
      await slot.prefill(ids);
      await emulated(ids.length);
      covered = end;
    };
    for (;;) {
      const target = this.received.length;
      if (covered >= target) {
        // Caught up with everything received — and with what is on screen
        // (PDD-TAKEOVER-009), which cannot be more.
        break;
      }
      const before = covered;
      await evalCloud(target);
      this.localReadyAt =
        performance.now() +
        (this.received.length - covered) * (this.prefillMsPerToken() ?? 0) +
        (this.localTpotMs ?? 0);
      if (covered === before) {
        // The cloud's text ends inside a UTF-8 character: wait for its last byte.
        if (this.cloudEnded || this.cloudFailed) break;
        await this.waitFor(() => this.received.length > target || this.cloudEnded || this.cloudFailed !== undefined);
      }
    }
    this.localReadyAt = undefined;

    // 3. Take over at k = covered (or, when the cloud already ended, simply
    // continue from there). Decided and applied to the display queue without
    // yielding, so the display cannot move past k in between.
    // End EOS: the answer is complete after the cloud's tokens (PDD-IDX-005), even
    // when the device's context stops short of them (a character cut at the end).
    const eos = this.cloudEndReason === EndReason.EOS && !this.cloudFailed;
    const k = eos ? this.received.length : Math.max(covered, this.shownCloud);
    if (k > covered) {
      // Shown but not in the device's context: a character cut at the seam.
      // The device's own output will spell it again; those bytes are swallowed.
      this.seamBytes = Buffer.concat(this.received.slice(covered, k).map((t) => t.piece));
    }
    this.takeoverSent = k;
    // Cloud tokens at or past k still waiting to be shown go (PDD-TAKEOVER-003).
    this.queue = this.queue.slice(0, Math.max(0, k - this.shownCloud));
    if (!this.cloudEnded && !this.cloudFailed && this.requestId !== undefined) {
      this.takeoverOnWire = true;
      if (this.state!.phase === "requested") {
        // Ahead of the cloud before it even accepted: a Takeover is not
        // allowed yet (PDD-TAKEOVER-008), and no cloud token is needed.
        await this.sendToCloud(
          create(DeviceFrameSchema, {
            body: {
              case: "cancel",
              value: {
                requestId: this.requestId,
                code: ErrorCode.CANCELLED,
                reason: "the device is ahead of the cloud",
              },
            },
          }),
        );
      } else {
        await this.sendToCloud(
          create(DeviceFrameSchema, { body: { case: "takeover", value: { requestId: this.requestId, index: k } } }),
        );
      }
    }
    if (eos && k >= this.received.length) return; // the answer was complete

    // 4. Decode the rest locally.
    const left = this.opts.maxTokens - k;
    if (left <= 0) return;
    let last = performance.now();
    for await (const t of slot.generate(this.opts.sampling ?? {}, left)) {
      if (this.engine.isEndOfGeneration(t)) break;
      await sleep(this.opts.emulate?.decodeMsPerToken ?? 0);
      const now = performance.now();
      this.localTpotMs = this.localTpotMs === undefined ? now - last : 0.8 * this.localTpotMs + 0.2 * (now - last);
      last = now;
      this.deviceIds.push(t);
      let piece = this.engine.pieces[t] ?? new Uint8Array();
      if (this.seamBytes.length > 0) {
        let n = 0;
        while (n < piece.length && n < this.seamBytes.length && piece[n] === this.seamBytes[n]) n++;
        this.seamBytes = n === piece.length ? this.seamBytes.subarray(n) : new Uint8Array();
        piece = piece.subarray(n);
      }
      this.queue.push({ piece, source: "device" });
      this.wakeDisplay?.();
    }
  }

  async run(): Promise<Report> {
    const slot = await this.engine.acquire();
    try {
      if (this.link && this.requestId !== undefined) {
        await this.link.send(this.prefillRequest()).catch((e: unknown) => this.onCloudLost(PddError.from(e)));
      }
      const display = this.displayLoop();
      try {
        await this.localWork(slot);
      } finally {
        this.localDone = true;
        this.wakeDisplay?.();
      }
      await display;
      const tail = this.decoder.decode();
      if (tail) this.opts.onText?.(tail);
    } finally {
      await slot.release();
      if (this.requestId !== undefined && !this.cloudEnded && !this.takeoverOnWire) {
        // Finished without taking over (max_tokens reached first): release the cloud.
        void this.sendToCloud(
          create(DeviceFrameSchema, {
            body: {
              case: "cancel",
              value: { requestId: this.requestId, code: ErrorCode.CANCELLED, reason: "answer complete" },
            },
          }),
        ).catch(() => undefined);
      }
    }
    return this.report();
  }

  private report(): Report {
    const k = this.takeoverSent ?? this.received.length;
    const cloudShown = Math.min(k, this.received.length);
    const gaps = this.displayTimes.slice(1).map((t, i) => t - this.displayTimes[i]!);
    const sorted = [...gaps].sort((a, b) => a - b);
    const mode: Mode = !this.link ? "local" : this.cloudFailed ? "fallback" : "pd";
    return {
      text: Buffer.concat(this.shownBytes).toString("utf8"),
      mode,
      ttftMs: this.displayTimes.length ? this.displayTimes[0]! - this.t0 : Number.NaN,
      tpotMs: {
        p50: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : 0,
        max: sorted.length ? sorted[sorted.length - 1]! : 0,
      },
      stalls: this.stalls,
      cloudTokens: cloudShown,
      deviceTokens: this.deviceIds.length,
      takeoverIndex: this.link && this.received.length > 0 ? k : null,
      prefillMs: { cloud: this.cloudPrefillMs, device: this.devicePrefillMs },
      kvImported: this.kvImported,
      kv: { asked: this.kvAsked, granted: this.kvGranted, ...(this.kvRefusal ? { refusal: this.kvRefusal } : {}) },
      refinement: this.refinementUsed,
      cloudTokenIds: this.received.slice(0, cloudShown).map((t) => t.id),
      deviceTokenIds: this.deviceIds,
      ...(this.cloudFailed ? { fallbackReason: this.cloudFailed } : {}),
      ...(this.localTpotMs !== undefined ? { localDecodeMs: this.localTpotMs } : {}),
      ...(this.cloudPromptTokens ? { cloudPromptTokens: this.cloudPromptTokens } : {}),
      ...(this.cloudDecodeTokPerS ? { cloudDecodeTokPerS: this.cloudDecodeTokPerS } : {}),
      ...(this.cloudEndReason !== undefined ? { endReason: EndReason[this.cloudEndReason] } : {}),
    };
  }
}
