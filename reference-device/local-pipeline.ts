/**
 * The device's own work on one request, in named steps:
 *
 *   prefill ──────────────────────▶ catch-up ───────────────────▶ takeover(k) ──▶ decode
 *   the prompt in chunks; or the    the cloud tokens received      k = what the     the rest of the
 *   cloud's KV image, or its        meanwhile (amortized prefill)  context covers   answer, shown
 *   refined prompt, when in time                                                   after the cloud's
 *
 * Each step reads what the cloud has said (CloudAnswer, KvReceiver) and
 * waits for more through the host; the display shows what it produces.
 * @internal
 */
import type { InferenceEngine, InferenceSlot as Slot, TokenLogprob } from "../engine/index.js";
import type { CloudAnswer } from "./cloud-answer.js";
import type { Display } from "./display.js";
import type { KvReceiver } from "./kv-receiver.js";
import type { Report, RunOptions } from "./run.js";
import { promptTokens, type Prompt } from "./prompt.js";
import { completeUtf8Prefix } from "./utf8.js";

/** Extra milliseconds that emulate a slower device (RunOptions.emulate); none when 0; cut short when the run is stopped. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

export interface PipelineHost {
  readonly cloud: CloudAnswer;
  readonly kv: KvReceiver;
  readonly display: Display;
  /** The cloud's model fingerprint, which its KV image carries. */
  readonly cloudModelFingerprint: Uint8Array | undefined;
  readonly sameTokenizer: boolean;
  /** False when the cloud tokenized a templated chat's text itself: its prompt tokens are not the device's. */
  readonly samePromptTokens: boolean;
  /** Resolves once `cond()` holds, checked again at each cloud event; or after `timeoutMs` when given. */
  until(cond: () => boolean, timeoutMs?: number): Promise<void>;
  /** Tells the cloud how the prefill went (informative, PDD-MSG-007). */
  progress(p: { prefilledTokens: number; coveredIndex: number; prefillTokensPerS: number }): void;
  /** Takes over at k: no cloud token at or past k is shown; a cloud still sending is told. */
  takeover(k: number): Promise<void>;
  /** Stops using the cloud for this request (it is told), for `why`; false when the request had no cloud. */
  abandonCloud(why: string): Promise<boolean>;
}

/** The prefill step's progress through the prompt it is prefilling. */
interface Prefilling {
  readonly original: number[];
  tokens: number[];
  done: number;
  switched: boolean;
  readonly startedAt: number;
}

export class LocalPipeline {
  /** When the local model is expected to emit its first own token (performance.now() ms); a time, not a duration, so it never goes stale. */
  readyAt: number | undefined;
  /** Measured ms per locally decoded token (moving average). */
  tpotMs: number | undefined;
  // For the report.
  prefillMs: number | null = null;
  /** Prompt tokens the device prefilled (fewer than the prompt when the cloud's answer came first, or KV covered it). */
  prefilledTokens = 0;
  readonly deviceIds: number[] = [];
  /** With RunOptions.logprobs: each of deviceIds' log-probabilities. */
  readonly deviceLogprobs: TokenLogprob[] = [];
  /** With RunOptions.logprobs: the cloud tokens' the catch-up computed, by answer index (holes where it did not evaluate them). */
  readonly cloudLogprobs: (TokenLogprob | undefined)[] = [];
  kvImported = false;
  refinement: Report["refinement"] = null;
  private prefillRate: number | undefined;
  /** The prompt being prefilled, while it is. */
  private prefilling: Prefilling | undefined;
  /** k, once the takeover is decided. */
  private takenOverAt: number | undefined;
  /** Bytes shown from the cloud that the device's context lacks (a partial UTF-8 character at the seam). */
  private seamBytes: Uint8Array = new Uint8Array();

  constructor(
    private readonly engine: InferenceEngine,
    private readonly prompt: Prompt,
    private readonly opts: RunOptions,
    private readonly host: PipelineHost,
  ) {}

  async run(slot: Slot): Promise<void> {
    try {
      await this.steps(slot);
    } catch (e) {
      // Whatever the cloud sent made the local model fail (a token, a KV image):
      // stop using the cloud and recompute from what is on screen (issue 13).
      // Without a cloud there is nothing to blame: the local model itself failed.
      if (!(await this.host.abandonCloud(`the device could not use the cloud's data: ${(e as Error).message}`)))
        throw e;
      await slot.reset();
      await this.recompute(slot);
    }
  }

  private async steps(slot: Slot): Promise<void> {
    const coveredByKv = await this.prefill(slot);
    const covered = this.complete ? coveredByKv : await this.catchUp(slot, coveredByKv);
    const k = await this.takeover(covered);
    if (k !== undefined) await this.decode(slot, k);
  }

  /** The cloud's tokens are the whole answer: no local work is needed any more (issue 16). */
  private get complete(): boolean {
    return this.host.cloud.complete(this.opts.maxTokens);
  }

  /**
   * After a failure: the prompt alone, then what is already on screen (the
   * cloud's tokens before the takeover, then the device's), then the rest.
   */
  private async recompute(slot: Slot): Promise<void> {
    const { cloud, display } = this.host;
    this.kvImported = false;
    await slot.prefill(promptTokens(this.engine, this.prompt), { chunk: this.opts.prefillChunk });
    const shown = this.takenOverAt ?? Math.min(cloud.received.length, display.shownCloud);
    const covered = await this.catchUp(slot, 0, shown);
    const k = this.takenOverAt ?? (await this.takeover(covered));
    if (k === undefined) return;
    if (this.deviceIds.length > 0) await slot.prefill(this.deviceIds);
    await this.decode(slot, k);
  }

  // ------------------------------------------------------------ 1. prefill

  /** Prefills the prompt; returns the cloud tokens a KV image covered instead (0 without one). */
  private async prefill(slot: Slot): Promise<number> {
    const original = promptTokens(this.engine, this.prompt);
    const p: Prefilling = { original, tokens: original, done: 0, switched: false, startedAt: performance.now() };
    this.prefilling = p;
    let coveredByKv = 0;
    while (p.done < p.tokens.length && !this.complete) {
      this.opts.signal?.throwIfAborted();
      const { kv } = this.host;
      if (kv.phase === "receiving") await this.host.until(() => kv.phase !== "receiving" || this.complete);
      if (this.complete) break;
      if (kv.phase === "ready" && kv.image) {
        const covered = await this.importKv(slot, p.tokens, kv.image);
        if (covered !== undefined) {
          coveredByKv = covered;
          p.done = p.tokens.length;
          break;
        }
        p.done = 0;
      }
      if (!p.switched) await this.switchToRefined(slot, p);
      await this.prefillChunk(slot, p);
    }
    this.prefilling = undefined;
    this.prefillMs = performance.now() - p.startedAt;
    this.prefilledTokens = coveredByKv > 0 || this.kvImported ? 0 : p.done;
    this.host.progress({
      prefilledTokens: p.done,
      coveredIndex: Math.max(0, coveredByKv),
      prefillTokensPerS: this.prefillRate ?? 0,
    });
    const refined = this.host.cloud.refined;
    if (refined && !this.refinement)
      this.refinement = { used: false, originalTokens: original.length, keptTokens: refined.keptTokens };
    return coveredByKv;
  }

  /** Loads the cloud's KV image in place of the prefill; returns the answer tokens it covers, or undefined when it does not fit. */
  private async importKv(slot: Slot, promptTokens: number[], image: Uint8Array): Promise<number | undefined> {
    const { cloud, kv } = this.host;
    const answerCovered = kv.positions - cloud.promptTokens;
    try {
      if (answerCovered < 0 || answerCovered > cloud.received.length || cloud.promptTokens !== promptTokens.length)
        throw new Error("image does not fit");
      const answer = cloud.received.slice(0, answerCovered).map((t) => t.id);
      const last = answerCovered > 0 ? answer[answerCovered - 1]! : promptTokens[promptTokens.length - 1]!;
      // The image must cover this prompt and these answer tokens: another context loads, into another answer (PDD-KV-013).
      const covers = [...promptTokens, ...answer];
      await slot.importState(image, this.host.cloudModelFingerprint ?? new Uint8Array(), last, covers);
      this.kvImported = true;
      return answerCovered;
    } catch (e) {
      kv.rejected(`KV image not imported: ${(e as Error).message}`);
      await slot.reset();
      return undefined;
    }
  }

  /**
   * Moves to the refined prompt when it came in time and leaves less to
   * prefill. With the cloud's token IDs, the prefix prefilled so far stays
   * and only the kept tokens after it are left (what the refined prompt
   * arrives to is often a fifth of the prompt done, issue 18); with another
   * tokenizer only the refined text is known, so it starts over on that.
   */
  private async switchToRefined(slot: Slot, p: Prefilling): Promise<void> {
    const rest = this.refinedRest(p);
    if (!rest) return;
    p.switched = true;
    if (this.spansApply()) p.tokens = [...p.original.slice(0, p.done), ...rest];
    else {
      await slot.reset();
      p.tokens = rest;
      p.done = 0;
    }
    this.refinement = { used: true, originalTokens: p.original.length, keptTokens: p.tokens.length };
  }

  /** What the refined prompt would leave to prefill from here, when it has come and leaves less; else undefined. */
  private refinedRest(p: Prefilling): number[] | undefined {
    const r = this.host.cloud.refined;
    if (!r || p.switched || this.host.kv.granted) return undefined;
    // A refined chat keeps whatever template markers survived as control tokens.
    const rest = this.spansApply()
      ? r.kept.flatMap((s) => p.original.slice(Math.max(s.start, p.done), Math.max(s.end, p.done)))
      : typeof this.prompt === "string"
        ? this.engine.tokenize(r.text)
        : this.engine.tokenizeTemplated(r.text);
    return rest.length < p.original.length - p.done ? rest : undefined;
  }

  /** The refined prompt's spans index this device's prompt tokens only when the cloud got the same tokens. */
  private spansApply(): boolean {
    return this.host.sameTokenizer && this.host.samePromptTokens;
  }

  /**
   * The refined prompt came (the run calls this as it arrives, with the
   * cloud's first token close behind): the display's estimate of the
   * handover counts what it leaves, not the rest of the whole prompt, at
   * once. Left until the next chunk's end, the estimate stretched the first
   * cloud tokens to 70 ms at a 50 ms target (live replay, issue 18).
   */
  refinedArrived(): void {
    if (this.prefilling) this.estimateReady(this.prefilling);
  }

  /** When the local model should emit its first own token: the prompt left, then the cloud's tokens (at most its budget). */
  private estimateReady(p: Prefilling): void {
    // Leaving the catch-up out let a long prompt's display run dry (1.2 s, found by the live replay).
    const catchUp = Math.min(this.host.cloud.grantedBudget, this.opts.maxTokens);
    const left = this.refinedRest(p)?.length ?? p.tokens.length - p.done;
    const perToken = this.prefillMsPerToken();
    this.readyAt =
      perToken !== undefined ? performance.now() + (left + catchUp) * perToken + (this.tpotMs ?? 0) : undefined;
  }

  private async prefillChunk(slot: Slot, p: Prefilling): Promise<void> {
    const step = p.tokens.slice(p.done, p.done + this.opts.prefillChunk);
    const t = performance.now();
    const res = await slot.prefill(step, { chunk: this.opts.prefillChunk });
    await this.emulated("prefill", step.length, t);
    p.done += res.done;
    this.prefillRate = p.done / Math.max(1e-3, (performance.now() - p.startedAt) / 1000);
    this.estimateReady(p);
  }

  /**
   * Ms per prefilled token for the display's estimate: the calibrated rate
   * (kept current across requests), else this prefill's own so far — which
   * early on counts the first chunk's start-up and overestimates.
   */
  private prefillMsPerToken(): number | undefined {
    return this.opts.prefillMsPerToken ?? (this.prefillRate ? 1000 / this.prefillRate : undefined);
  }

  // ------------------------------------------------------------ 2. catch-up

  /**
   * Evaluates the cloud tokens received meanwhile until the context is a lead
   * ahead of the display; returns how many it covers. Not every token
   * received: the cloud sends ahead of the display (decode_pace), and
   * covering all it sent put the takeover at the whole budget (k = 160 of
   * 160 in the demo). Not just what is shown: taking over with nothing
   * buffered leaves the display waiting for the device's first token, on top
   * of the time since the last one (66.9 ms gaps on the NPU, issue 18).
   */
  private async catchUp(slot: Slot, coveredByKv: number, upTo = Number.POSITIVE_INFINITY): Promise<number> {
    const { cloud, display } = this.host;
    const lead = this.takeoverLead();
    let covered = coveredByKv;
    while (!this.complete) {
      this.opts.signal?.throwIfAborted();
      const available = Math.min(upTo, cloud.received.length);
      // The cloud is streaming and has granted tokens still to send.
      const moreComing = available > 0 && available < upTo && !cloud.done && available < cloud.grantedBudget;
      const target = Math.min(available, display.shownCloud + lead);
      if (covered >= target) {
        // A lead ahead of what is shown (PDD-TAKEOVER-009 needs only k ≥ shown), or all there will be.
        if (covered >= display.shownCloud + lead || !moreComing) break;
        // Short of the lead: the cloud's next token is worth waiting for only while it keeps up with the display.
        const wait = this.cloudWorthWaitingMs();
        if (wait === undefined) break;
        await this.host.until(() => cloud.received.length > available || cloud.done, wait);
        if (cloud.received.length === available && !cloud.done) break; // it did not come in time
        continue;
      }
      const before = covered;
      covered = await this.evaluateCloudTokens(slot, covered, target);
      // The cloud's text ends inside a UTF-8 character at the target: cover the rest of that character from
      // what has come, and wait for its last byte only when it has not come. (Waiting on `received > target`
      // when more than the target had come spun without yielding: a hang on another vocabulary, issue 19.)
      if (covered === before && target < available) covered = await this.evaluateCloudTokens(slot, covered, available);
      this.readyAt = performance.now() + (target - covered) * (this.prefillMsPerToken() ?? 0) + (this.tpotMs ?? 0);
      if (covered === before) {
        if (!moreComing) break;
        await this.host.until(() => cloud.received.length > available || cloud.done);
      }
    }
    this.readyAt = undefined;
    return covered;
  }

  /**
   * Short of the lead, how long to wait for the cloud's next token rather
   * than take over now; undefined: take over now. Taking over is right when
   * the device's first own token makes the display's next slot (the last
   * shown + the target TPOT), or when the cloud's next token is not expected
   * before the device's own would come. Otherwise the display would wait on
   * the device's decode step (a 63 ms gap at a 50 ms target on the NPU, where
   * the cloud's token came 30 ms later): wait for the cloud's, until a little
   * after it is due. Its interval is the measured one, else the rate the
   * cloud showed on earlier requests; with neither, nothing is waited for.
   */
  private cloudWorthWaitingMs(): number | undefined {
    const { cloud, display } = this.host;
    const now = performance.now();
    const own = now + (this.opts.decodeMsPerToken ?? 0);
    const slot = (display.lastShownAt ?? now) + Math.max(1, this.opts.targetTpotMs);
    const interval = cloud.arrivalIntervalMs ?? this.opts.cloudMsPerToken;
    if (own <= slot || interval === undefined || cloud.lastTokenAt === undefined) return undefined;
    const due = cloud.lastTokenAt + interval;
    if (due >= own) return undefined;
    return Math.max(0, due - now) + interval / 2;
  }

  /**
   * Cloud tokens the context should be ahead of the display at the takeover:
   * enough for the display to show while the device decodes its first own
   * token, plus one for the step under way.
   */
  private takeoverLead(): number {
    const step = this.opts.decodeMsPerToken ?? 0;
    return Math.ceil(step / Math.max(1, this.opts.targetTpotMs)) + 1;
  }

  /** Adds cloud tokens [covered, upTo) to the context; returns the new covered count. */
  private async evaluateCloudTokens(slot: Slot, covered: number, upTo: number): Promise<number> {
    const received = this.host.cloud.received;
    const t = performance.now();
    const emulated = (n: number) => this.emulated("prefill", n, t);
    if (this.host.sameTokenizer) {
      // Asked for log-probabilities: the catch-up evaluates these tokens anyway, so it keeps theirs.
      const top = this.opts.logprobs;
      const res = await slot.prefill(
        received.slice(covered, upTo).map((t) => t.id),
        top !== undefined ? { logprobs: top } : {},
      );
      res.logprobs?.forEach((lp, i) => {
        this.cloudLogprobs[covered + i] = lp;
      });
      await emulated(upTo - covered);
      return upTo;
    }
    // Another tokenizer: re-tokenize the cloud's text, whole characters only:
    // the longest run of tokens from `covered` whose bytes end on a character boundary.
    const bytesTo = (e: number) => Buffer.concat(received.slice(covered, e).map((t) => t.piece));
    let end = upTo;
    let bytes = bytesTo(end);
    while (end > covered && completeUtf8Prefix(bytes) < bytes.length) bytes = bytesTo(--end);
    if (end === covered) return covered;
    const ids = this.engine.tokenizeContinuation(bytes.toString("utf8"));
    await slot.prefill(ids);
    await emulated(ids.length);
    return end;
  }

  // ------------------------------------------------------------ 3. takeover

  /**
   * Takes over at k = covered (or, when the cloud already ended, simply
   * continues from there), decided and applied to the display without
   * yielding, so the display cannot move past k in between. Returns k, or
   * undefined when the cloud's tokens completed the answer.
   */
  private async takeover(covered: number): Promise<number | undefined> {
    const { cloud, display } = this.host;
    // End EOS or MAX_TOKENS, or max_tokens received: the answer is complete after the cloud's tokens
    // (PDD-IDX-005, PDD-IDX-008), even when the device's context stops short of them (a character cut at the end).
    const complete = this.complete;
    const k = complete ? Math.min(cloud.received.length, this.opts.maxTokens) : Math.max(covered, display.shownCloud);
    this.takenOverAt = k;
    if (k > covered) {
      // Shown but not in the device's context: a character cut at the seam.
      // The device's own output will spell it again; those bytes are swallowed.
      this.seamBytes = Buffer.concat(cloud.received.slice(covered, k).map((t) => t.piece));
    }
    await this.host.takeover(k);
    return complete ? undefined : k;
  }

  // ------------------------------------------------------------ 4. decode

  /** Decodes the rest of the answer from k, showing each token after the cloud's. */
  private async decode(slot: Slot, k: number): Promise<void> {
    const left = this.opts.maxTokens - k - this.deviceIds.length;
    if (left <= 0) return;
    let last = performance.now();
    let logprob: TokenLogprob | undefined;
    const top = this.opts.logprobs;
    const logprobs = top !== undefined ? { top, each: (lp: TokenLogprob) => (logprob = lp) } : undefined;
    for await (const t of slot.generate(this.opts.sampling ?? {}, left, logprobs)) {
      if (this.engine.isEndOfGeneration(t) || this.opts.signal?.aborted) break;
      if (logprob) this.deviceLogprobs.push(logprob);
      await this.emulated("decode", 1, last);
      const now = performance.now();
      this.tpotMs = this.tpotMs === undefined ? now - last : 0.8 * this.tpotMs + 0.2 * (now - last);
      last = now;
      this.deviceIds.push(t);
      this.host.display.push({ piece: this.withoutSeam(this.engine.pieces[t] ?? new Uint8Array()), source: "device" });
    }
  }

  /**
   * The emulated slower device (RunOptions.emulate) after `n` tokens of work
   * begun at `since`: the per-token ms on top of it, or ("pad") what makes the
   * step take that per token in all, whatever this machine spent on it.
   */
  private emulated(kind: "prefill" | "decode", n: number, since: number): Promise<void> {
    const e = this.opts.emulate;
    const ms = n * ((kind === "prefill" ? e?.prefillMsPerToken : e?.decodeMsPerToken) ?? 0);
    return sleep(e?.mode === "pad" ? ms - (performance.now() - since) : ms, this.opts.signal);
  }

  /** The part of `piece` not already shown at the seam. */
  private withoutSeam(piece: Uint8Array): Uint8Array {
    if (this.seamBytes.length === 0) return piece;
    let n = 0;
    while (n < piece.length && n < this.seamBytes.length && piece[n] === this.seamBytes[n]) n++;
    this.seamBytes = n === piece.length ? this.seamBytes.subarray(n) : new Uint8Array();
    return piece.subarray(n);
  }
}
