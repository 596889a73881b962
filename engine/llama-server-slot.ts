/**
 * One cloud request's sequence on a llama-server backend. The sequence is a
 * token list held here: prefill only records tokens, and decoding is one
 * streamed `/completion` whose prompt is the whole list as token IDs, with
 * the prompt cache on, so a resumed request (after a KV export, or after
 * recovering held-back tokens) re-evaluates nothing it already holds.
 *
 * llama-server streams a token only once the text so far is whole UTF-8: a
 * token that ends inside a character (a byte-fallback token) is never
 * streamed, only counted in `tokens_predicted`. A jump in that count makes
 * this slot fetch the missing tokens with a non-streamed request (greedy
 * decoding gives the same tokens again) and resume streaming after them.
 * Sampled decoding (temperature > 0) does not give them again: a sampled
 * answer that needs them ends with INTERNAL, and the device finishes it.
 * @internal
 */
import { randomUUID } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, PddError } from "../proto/index.js";
import type { InferenceSlot, Sampling } from "./inference.js";
import type { CompletionParams } from "./llama-server-client.js";
import { readSeqStateHeader, toSequenceImage } from "./llama-server-kv.js";
import type { Backend, BackendPool } from "./llama-server-pool.js";
import type { PromptScorer } from "./llama-server-scorer.js";
import { wholeTextPrefix } from "./llama-server-utf8.js";

export class LlamaServerSlot implements InferenceSlot {
  /** Prompt and answer tokens; the last one is pending (not yet in the backend's KV for this request). */
  private held: number[] = [];
  /** Where the answer starts in `held`: tokens before it are the prompt's, which no request may cut. */
  private answerFrom = 0;
  private stream: AbortController | undefined;
  /** exportState stopped the stream: generate resumes instead of ending. */
  private interrupted = false;
  private generating = false;
  private released = false;
  /** The decoding under way samples (temperature > 0): tokens decoded again would be other tokens. */
  private sampled = false;

  constructor(
    private readonly pool: BackendPool,
    readonly backend: Backend,
    /** The backend's slot this sequence runs on, pinned by the pool: its prompt cache holds what we hold. */
    private readonly idSlot: number,
    private readonly slotSaveDir: string | undefined,
    /** Every token's bytes: where the held text ends inside a UTF-8 character. */
    private readonly pieces: readonly Uint8Array[],
    /** Scores a prompt for refinement (llama-server gives no prompt log-probabilities); none: no surprisal. */
    private readonly scorer?: PromptScorer,
  ) {}

  get evaluated(): number {
    return Math.max(0, this.held.length - 1);
  }

  get position(): number {
    return this.held.length;
  }

  /**
   * Records the tokens; the backend evaluates them with the first decode request. Surprisal, when asked for, comes
   * from the engine's local scoring model, over these tokens alone.
   */
  async prefill(
    tokens: readonly number[],
    opts: { surprisal?: boolean } = {},
  ): Promise<{ surprisal?: Float64Array; done: number }> {
    this.assertUsable();
    const surprisal = opts.surprisal && this.scorer ? await this.scorer.surprisal(tokens) : undefined;
    this.held.push(...tokens);
    this.answerFrom = this.held.length;
    return { surprisal, done: tokens.length };
  }

  async *generate(sampling: Sampling = {}, maxTokens = Number.POSITIVE_INFINITY): AsyncGenerator<number> {
    this.assertUsable();
    if (this.held.length === 0) throw new PddError(ErrorCode.INTERNAL, "nothing to decode from: prefill first");
    if (this.generating) throw new PddError(ErrorCode.INTERNAL, "sequence is already decoding");
    this.generating = true;
    this.sampled = (sampling.temperature ?? 0) > 0;
    let n = 0;
    try {
      while (n < maxTokens) {
        const before = n;
        let ended = false;
        for await (const t of this.streamOnce(sampling, maxTokens - n, () => (ended = true))) {
          n++;
          yield t;
        }
        if (ended || (n === before && !this.interrupted)) return;
        this.interrupted = false;
      }
    } finally {
      this.generating = false;
      this.stream?.abort();
    }
  }

  /**
   * One streamed request from the held tokens; yields (and holds) each token,
   * recovered ones included. Calls `ended` when the backend finished (EOS or
   * n_predict); returns without it when interrupted or after a recovery.
   */
  private async *streamOnce(sampling: Sampling, left: number, ended: () => void): AsyncGenerator<number> {
    const ctl = new AbortController();
    this.stream = ctl;
    // From whole text (llama-server-utf8.ts): the backend decodes the cut tokens again, streaming no chunk for them.
    const { prompt, again } = wholeTextPrefix(this.held, this.pieces, this.answerFrom);
    const params = { ...this.params(sampling, left + again.length), prompt };
    let received = again.length;
    let gap: { count: number; streamed: number[]; stop: boolean } | undefined;
    try {
      for await (const c of this.backend.client.stream(params, ctl.signal)) {
        const missing = c.tokensPredicted - received - c.tokens.length;
        if (missing > 0) {
          gap = { count: missing + c.tokens.length, streamed: c.tokens, stop: c.stop };
          break;
        }
        for (const t of c.tokens) {
          received++;
          this.held.push(t);
          yield t;
        }
        if (c.stop) return ended();
      }
    } catch (e) {
      if (ctl.signal.aborted) return; // stopped by us: the consumer or exportState
      throw this.failed(e);
    }
    if (!gap) return;
    // Outside the try: a recovery that fails must fail the request, not pass for a stream we stopped.
    ctl.abort();
    yield* this.recover(sampling, gap.count, gap.streamed);
    if (gap.stop) ended();
  }

  /**
   * Fetches `count` tokens after the held ones without streaming; `then` are the streamed ones they must end with.
   * llama-server parses a non-streamed answer's text and fails (HTTP 500) when it is not whole UTF-8: when the
   * held tokens end inside a character (the answer would start inside it), the request starts from before that
   * character and decodes its tokens again; when the answer would end inside one (the budget ends there), up to 4
   * more tokens (a character's most bytes) are asked for. Greedy decoding gives the same tokens again (checked).
   */
  private async *recover(sampling: Sampling, count: number, then: number[]): AsyncGenerator<number> {
    this.mustDecodeAgain(`streamed no token for ${count - then.length} (their text ends inside a UTF-8 character)`);
    const { prompt, again: cut } = wholeTextPrefix(this.held, this.pieces, this.answerFrom);
    const back = cut.length;
    let tokens: number[] | undefined;
    for (let extra = 0; !tokens; extra++) {
      try {
        const params = { ...this.params(sampling, back + count + extra), prompt };
        tokens = (await this.backend.client.complete(params)).tokens.slice(0, back + count);
      } catch (e) {
        const partial = e instanceof PddError && e.code === ErrorCode.INTERNAL && / answered 500: /.test(e.message);
        if (!partial || extra === 4) throw this.failed(e);
      }
    }
    const again = tokens.slice(0, back);
    tokens = tokens.slice(back);
    const differs = then.length > 0 && tokens.slice(-then.length).join() !== then.join();
    if (differs || again.join() !== cut.join())
      throw new PddError(
        ErrorCode.INTERNAL,
        `llama-server ${this.backend.client.url} decoded differently when asked again, greedy as it was`,
      );
    for (const t of tokens) {
      this.held.push(t);
      yield t;
    }
  }

  /**
   * Decoding tokens again gives the same ones only when decoding is greedy: a sampled answer would go on from other
   * tokens than those already sent, so it stops here (INTERNAL, an engine failure: the device finishes the answer).
   * The way out, not taken: replay the request non-streamed with the same explicit seed (llama-server seeds its
   * sampler per request), which repeats the tokens as long as the logits are bit-identical.
   */
  private mustDecodeAgain(why: string): void {
    if (!this.sampled) return;
    throw new PddError(
      ErrorCode.INTERNAL,
      `llama-server ${this.backend.client.url} ${why}, and sampled decoding (temperature > 0) cannot have the ` +
        "same tokens again: the cloud's part of the answer ends here",
    );
  }

  private params(sampling: Sampling, left: number): CompletionParams {
    return {
      prompt: [...this.held],
      nPredict: Number.isFinite(left) ? left : -1,
      idSlot: this.idSlot,
      temperature: sampling.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      seed: sampling.seed,
    };
  }

  /** A request that broke off: the backend leaves rotation when it is unreachable. */
  private failed(e: unknown): PddError {
    const err = e instanceof PddError ? e : undefined;
    if (!err || err.code === ErrorCode.UNAVAILABLE) this.pool.markDown(this.backend, "a request to it failed");
    return (
      err ??
      new PddError(ErrorCode.UNAVAILABLE, `llama-server ${this.backend.client.url} broke off mid-answer`, {
        cause: e,
        retryable: true,
      })
    );
  }

  /**
   * The KV state of the evaluated tokens (all held but the pending one), from
   * a slot save: the backend's slot is first brought to exactly those tokens
   * (a one-token request on the cached prompt), then saved into
   * `--slot-save-path`, read here, and rewritten into node-llama-cpp's
   * sequence-image layout (llama-server-kv.ts). Decoding resumes afterwards.
   */
  async exportState(): Promise<Uint8Array> {
    this.assertUsable();
    if (!this.slotSaveDir)
      throw new PddError(
        ErrorCode.UNSUPPORTED_FEATURE,
        "KV export from llama-server needs its --slot-save-path shared with the cloud (--slot-save-dir)",
      );
    this.interrupted = true;
    this.stream?.abort();
    const evaluated = this.held.slice(0, -1);
    // Streamed, from whole text (llama-server-utf8.ts): the slot's KV ends up holding `prompt`, then `again`
    // decoded anew, and the one token sampled after them is not evaluated.
    const { prompt, again } = wholeTextPrefix(evaluated, this.pieces, this.answerFrom);
    const request = { prompt, nPredict: again.length + 1, idSlot: this.idSlot };
    const filename = `pdd-kv-${randomUUID()}.bin`;
    try {
      for await (const chunk of this.backend.client.stream(request, new AbortController().signal))
        if (chunk.stop) break;
      await this.backend.client.saveSlot(this.idSlot, filename);
    } catch (e) {
      throw this.failed(e);
    }
    const file = join(this.slotSaveDir, filename);
    let image: Uint8Array;
    try {
      image = toSequenceImage(new Uint8Array(await readFile(file)));
    } finally {
      await rm(file, { force: true });
    }
    if (readSeqStateHeader(image).tokens.join() !== evaluated.join())
      throw new PddError(
        ErrorCode.INTERNAL,
        `llama-server ${this.backend.client.url} saved other tokens than the sequence's, greedy as it was`,
      );
    return image;
  }

  async importState(): Promise<void> {
    throw new PddError(ErrorCode.UNSUPPORTED_FEATURE, "the llama-server engine does not import KV state");
  }

  async reset(): Promise<void> {
    this.assertUsable();
    this.stream?.abort();
    this.held = [];
    this.answerFrom = 0;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.stream?.abort();
    this.pool.release(this.backend, this.idSlot);
  }

  private assertUsable(): void {
    if (this.released) throw new PddError(ErrorCode.INTERNAL, "sequence already released");
  }
}
