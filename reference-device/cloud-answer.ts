/**
 * What the cloud has said about one request, gathered from its frames after
 * the device state machine checked them: the tokens received, the budget and
 * prompt size it granted, a refined prompt, how it ended or why it failed,
 * and the rates it reported. Pure. @internal
 */
import { EndReason, type Accepted, type CloudFrame, type End, type RefinedPrompt } from "../proto/index.js";

export interface Received {
  id: number;
  piece: Uint8Array;
}

export class CloudAnswer {
  readonly received: Received[] = [];
  grantedBudget = 0;
  /** Accepted.prompt_tokens: the cloud's prompt, for matching a KV image and for its prefill rate. */
  promptTokens = 0;
  /** FirstToken.prefill_us, in ms. */
  prefillMs: number | null = null;
  /** The rate the cloud decoded (and sent) at: End.usage decoded_tokens / decode_us. */
  decodeTokPerS: number | undefined;
  /** End.usage decoded_tokens: what the request cost the cloud in decode steps, sent or not. */
  decodedTokens: number | undefined;
  refined: RefinedPrompt | undefined;
  /** No more frames will come: End arrived or the connection was lost. */
  ended = false;
  endReason: EndReason | undefined;
  /** Why the cloud was not (fully) used; the first reason stands. */
  failed: string | undefined;
  /** When the last token arrived (performance.now() ms) and the smoothed ms between arrivals, once two came. */
  lastTokenAt: number | undefined;
  arrivalIntervalMs: number | undefined;

  /** The cloud will send no more tokens. */
  get done(): boolean {
    return this.ended || this.failed !== undefined;
  }

  /**
   * The cloud's tokens are the whole answer: it ended with EOS or MAX_TOKENS (PDD-IDX-005, PDD-IDX-008),
   * or sent `maxTokens` without failing.
   */
  complete(maxTokens: number): boolean {
    if (this.failed !== undefined) return false;
    const ended = this.endReason === EndReason.EOS || this.endReason === EndReason.MAX_TOKENS;
    return ended || this.received.length >= maxTokens;
  }

  accepted(a: Accepted): void {
    this.grantedBudget = a.cloudTokenBudget;
    this.promptTokens = a.promptTokens;
  }

  tokens(startIndex: number, tokens: Received[], frame: CloudFrame, now = performance.now()): void {
    if (this.lastTokenAt !== undefined && tokens.length > 0) {
      const each = (now - this.lastTokenAt) / tokens.length;
      this.arrivalIntervalMs = this.arrivalIntervalMs === undefined ? each : 0.7 * this.arrivalIntervalMs + 0.3 * each;
    }
    if (tokens.length > 0) this.lastTokenAt = now;
    if (startIndex === 0 && this.prefillMs === null) {
      const ft = frame.body.case === "firstToken" ? frame.body.value : undefined;
      this.prefillMs = ft ? ft.prefillUs / 1000 : null;
    }
    for (const t of tokens) this.received.push({ id: t.id, piece: t.piece });
  }

  end(end: End): void {
    const u = end.usage;
    if (u) this.decodedTokens = u.decodedTokens;
    if (u && u.decodeUs > 0 && u.decodedTokens >= 4) this.decodeTokPerS = (1e6 * u.decodedTokens) / u.decodeUs;
    this.ended = true;
    this.endReason = end.reason;
    if (end.reason === EndReason.ERROR) this.fail("cloud ended the request with an error");
  }

  /** One word for why (connect-failure.ts's causes, or lost, violation, cloud-error, local-eval). */
  failedCause: string | undefined;

  /** The first failure stands, as `cause: why`. */
  fail(why: string, cause = "cloud-error"): void {
    if (this.failed !== undefined) return;
    this.failed = why.startsWith(`${cause}:`) ? why : `${cause}: ${why}`;
    this.failedCause = cause;
  }

  /** The connection ended or failed before End, or the device stopped using the cloud. */
  lost(why: string, cause = "lost"): void {
    if (this.ended) return;
    this.fail(why, cause);
    this.ended = true;
  }
}
