/**
 * The decode loop of a request at the cloud: decode a token, wait until it is
 * due, send it (FirstToken, then TokenBatch), start the KV export when the
 * device holds enough tokens — until the budget, EOS or a halt. A halt ends
 * the paced wait at once, and a token decoded after it is never sent
 * (PDD-TAKEOVER-004). @internal
 */
import { create } from "@bufbuild/protobuf";
import { CloudFrameSchema, ErrorCode, PddError, type CloudFrame, type PrefillRequest } from "../proto/index.js";
import type { InferenceEngine, InferenceSlot, Sampling } from "../engine/index.js";
import type { KvTransfer } from "./kv-sender.js";
import type { CloudMetrics } from "./metrics.js";
import { pause } from "./wait.js";

/** Microseconds since `fromMs` (a performance.now() time). */
export const usSince = (fromMs: number) => Math.max(0, Math.round((performance.now() - fromMs) * 1000));

export interface DecodeSetup {
  engine: InferenceEngine;
  slot: InferenceSlot;
  metrics: CloudMetrics;
  /** Multiples of the device's display rate to send at; 0: no pacing (config.ts). */
  decodePace: number;
  req: PrefillRequest;
  budget: number;
  promptTokens: number;
  /** performance.now() times: the request's receipt and its prefill's start. */
  receivedAt: number;
  prefillStartedAt: number;
  queueUs: number;
  halted: AbortSignal;
  /** Tokens sent so far (the state machine's count). */
  sent: () => number;
  send: (frame: CloudFrame) => Promise<void>;
  /** The transfer, when KV was granted. */
  kv: KvTransfer | undefined;
}

export interface Decoded {
  /** The model said EOS (not sent, PDD-MSG-010). */
  eos: boolean;
  decoded: number;
  prefillUs: number;
  decodeUs: number;
}

/** Rough cost of saving a sequence state, ms: its size at ~100 MB/s (measured: 75 MB in ~0.8 s). */
function estimateKvMs(engine: { kvBytesPerToken: number }, positions: number): number {
  return (positions * engine.kvBytesPerToken) / 100_000;
}

export class DecodeLoop {
  private decoded = 0;
  private prefillUs = 0;
  private firstSentAt = 0;
  /** The tokens the device must hold before the KV export starts. */
  private readonly kvAfter: number;

  constructor(private readonly s: DecodeSetup) {
    // Saving a KV image pauses decoding (~10 ms per MB measured on CPU); export
    // once the device holds enough tokens to cover twice that pause.
    const tpotMs = Math.max(1, s.req.targetTpotUs / 1000 || 40);
    const cover = Math.ceil((2 * estimateKvMs(s.engine, s.promptTokens)) / tpotMs);
    this.kvAfter = Math.max(0, Math.min(s.budget - 1, cover));
  }

  async run(): Promise<Decoded> {
    const { req, slot, engine, metrics, halted } = this.s;
    const startedAt = performance.now();
    const gen = slot.generate(samplingOf(req), this.s.budget);
    let eos = false;
    try {
      while (!halted.aborted) {
        const r = await gen.next();
        if (r.done) break;
        this.decoded++;
        metrics.decodedTokens.inc();
        if (halted.aborted) break; // decoded, but it must not be sent (PDD-TAKEOVER-004)
        if (engine.isEndOfGeneration(r.value)) {
          eos = true; // PDD-MSG-010: the EOS token is not sent
          break;
        }
        await this.paced();
        if (halted.aborted) break;
        await this.emit(r.value);
        await this.exportKvWhenDue();
      }
    } finally {
      await gen.return(undefined);
    }
    if (!eos && !halted.aborted) this.assertBudgetSpent();
    return { eos, decoded: this.decoded, prefillUs: this.prefillUs, decodeUs: usSince(startedAt) };
  }

  /**
   * An engine that stops yielding before the budget, without EOS or a halt,
   * failed: the request ends with an Error, never with the budget's own End
   * (MAX_TOKENS would tell the device that the answer is complete, PDD-IDX-004,
   * PDD-IDX-008). A llama-server backend killed before its first token did so
   * (issue 19): the device showed an empty answer as complete.
   */
  private assertBudgetSpent(): void {
    const sent = this.s.sent();
    if (sent < this.s.budget)
      throw new PddError(
        ErrorCode.INTERNAL,
        `the engine stopped after ${sent} of the ${this.s.budget} granted tokens, without end of generation`,
      );
  }

  /**
   * Waits until the next token is due at decodePace × the device's display
   * rate (target_tpot_us is a hint): ahead of the display, never burning
   * compute on tokens a takeover would discard. A halt ends the wait at once.
   */
  private async paced(): Promise<void> {
    const { req, decodePace } = this.s;
    const sent = this.s.sent();
    if (!(req.targetTpotUs > 0 && decodePace > 0 && sent > 0)) return;
    const wait = this.firstSentAt + (sent * req.targetTpotUs) / (1000 * decodePace) - performance.now();
    if (wait > 0) await pause(wait, this.s.halted);
  }

  private async emit(token: number): Promise<void> {
    const { s } = this;
    const wire = { id: token, piece: s.engine.pieces[token] ?? new Uint8Array() };
    if (s.sent() === 0) await this.sendFirst(wire);
    else {
      await s.send(
        create(CloudFrameSchema, {
          body: { case: "tokenBatch", value: { requestId: s.req.requestId, startIndex: s.sent(), tokens: [wire] } },
        }),
      );
    }
    s.metrics.sentTokens.inc();
  }

  private async sendFirst(wire: { id: number; piece: Uint8Array }): Promise<void> {
    const { s } = this;
    const sinceReceipt = performance.now() - s.receivedAt;
    if (s.req.deadlineMs > 0 && sinceReceipt > s.req.deadlineMs) {
      // Never a FirstToken past the deadline (PDD-REQ-006).
      throw new PddError(
        ErrorCode.DEADLINE_EXCEEDED,
        `the first token was ready ${Math.round(sinceReceipt)} ms after receipt, past the ${s.req.deadlineMs} ms deadline (PDD-REQ-006)`,
        { retryable: true },
      );
    }
    this.prefillUs = usSince(s.prefillStartedAt);
    this.firstSentAt = performance.now();
    await s.send(
      create(CloudFrameSchema, {
        body: {
          case: "firstToken",
          value: { requestId: s.req.requestId, token: wire, queueUs: s.queueUs, prefillUs: this.prefillUs },
        },
      }),
    );
    s.metrics.firstToken.observe((performance.now() - s.receivedAt) / 1000);
  }

  private async exportKvWhenDue(): Promise<void> {
    const { kv, slot } = this.s;
    // The image covers the prompt and the answer tokens sent before this one
    // (PDD-KV-012): the device's buffer hides the export's pause.
    const covered = this.s.sent() - 1;
    if (!kv || kv.started || covered < this.kvAfter) return;
    kv.start(await slot.exportState(), this.s.promptTokens + covered);
  }
}

function samplingOf(req: PrefillRequest): Sampling {
  return {
    temperature: req.sampling?.temperature ?? 0,
    topK: req.sampling?.topK,
    topP: req.sampling?.topP,
    seed: req.sampling ? Number(req.sampling.seed) : undefined,
  };
}
