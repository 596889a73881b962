/**
 * A simulated engine: deterministic tokens with the timing of a published
 * measurement (profiles.ts). It lets the real peers, protocol code and
 * transports serve thousands of requests on a 2-core machine — the trace
 * replay and the soak — where llama.cpp would measure this CPU instead.
 *
 * - Tokenizer: one token per UTF-8 byte (ids 0–255), BOS 256, EOS 257.
 * - Model: the next token is a hash of every token before it, so a sequence
 *   that has evaluated the same tokens continues identically — on the cloud,
 *   on the device after catch-up, after a KV import (PDD-CATCHUP semantics).
 * - Time: prefill costs 1/prefill-rate per token, decoding 1/decode-rate per
 *   token, per sequence. Sequences do not slow each other down: a GPU's
 *   batching is modelled as the profile's rate for each of `capacity`
 *   sequences, as the trace simulation does.
 * - KV images carry the tokens, padded to the profile's bytes per position,
 *   so transfers cost what the real model's would on the wire.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { ErrorCode, PddError } from "../proto/index.js";
import { sameBytes } from "./fingerprint.js";
import type { InferenceEngine, InferenceSlot, ModelInfo, Sampling } from "./inference.js";
import type { Profile } from "./profiles.js";
import { sameTokens } from "./seq-state-check.js";

const BOS = 256;
const EOS = 257;
const MAGIC = Buffer.from("PDDSIM01");
/** What the model says: lower-case letters and spaces, one byte each. */
const ALPHABET = Buffer.from("etaoin shrdlu cmfwyp vbgkqj xz etaoin sh");

export interface SimEngineOptions {
  profile: Profile;
  /** Concurrent sequences; default 1. */
  sequences?: number;
  /** Positions per sequence; default 131,072. */
  contextSize?: number;
  /** Multiplies every duration (0.1 = ten times faster than the profile); default 1. */
  timeScale?: number;
  /**
   * Batched decoding: a decode step takes msPerDecodeToken × this factor of
   * the sequences held at that step (a GPU slows each sequence as its batch
   * grows). Default: 1 at any batch.
   */
  decodeSlowdown?: (sequences: number) => number;
}

const sha256 = (s: string) => new Uint8Array(createHash("sha256").update(s).digest());

/** The hash of a history extended by one token. */
function mix(h: number, token: number): number {
  let x = (h ^ (token + 0x9e3779b9 + (h << 6) + (h >>> 2))) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}

export class SimEngine implements InferenceEngine {
  readonly info: ModelInfo;
  readonly pieces: Uint8Array[];
  readonly contextSize: number;
  readonly capacity: number;
  readonly kvBytesPerToken: number;
  readonly profile: Profile;
  /** ms per prefilled and per decoded token, after the time scale. */
  readonly msPerPrefillToken: number;
  readonly msPerDecodeToken: number;
  /** Sequence-milliseconds held by released slots, and tokens computed: the cloud's occupancy. */
  readonly usage = { heldMs: 0, prefilled: 0, decoded: 0, acquired: 0 };
  private inUse = 0;
  readonly decodeSlowdown: (sequences: number) => number;
  private waiting: (() => void)[] = [];
  private closed = false;

  constructor(o: SimEngineOptions) {
    this.profile = o.profile;
    const scale = o.timeScale ?? 1;
    if (!(scale > 0)) throw new PddError(ErrorCode.INVALID_ARGUMENT, `time scale must be positive, not ${scale}`);
    this.msPerPrefillToken = (1000 * scale) / o.profile.prefillTokPerS;
    this.msPerDecodeToken = (1000 * scale) / o.profile.decodeTokPerS;
    this.decodeSlowdown = o.decodeSlowdown ?? (() => 1);
    this.capacity = o.sequences ?? 1;
    this.contextSize = o.contextSize ?? 131_072;
    this.kvBytesPerToken = o.profile.kvBytesPerToken;
    this.pieces = Array.from({ length: 258 }, (_, i) => (i < 256 ? Uint8Array.of(i) : new Uint8Array()));
    this.info = {
      name: `sim ${o.profile.model}`,
      modelFingerprint: sha256(`pdd-sim-model:${o.profile.model}`),
      tokenizerFingerprint: sha256("pdd-sim-tokenizer:bytes-v1"),
      vocabSize: this.pieces.length,
      contextLength: this.contextSize,
      architecture: "pdd-sim",
    };
  }

  tokenize(text: string): number[] {
    return [BOS, ...Buffer.from(text, "utf8")];
  }

  tokenizeContinuation(text: string): number[] {
    return [...Buffer.from(text, "utf8")];
  }

  /** A byte vocabulary has no control token a template could spell: as tokenize(). */
  tokenizeTemplated(text: string): number[] {
    return this.tokenize(text);
  }

  bytes(ids: readonly number[]): Uint8Array {
    return Buffer.concat(ids.map((t) => this.pieces[t] ?? new Uint8Array()));
  }

  isEndOfGeneration(id: number): boolean {
    return id === EOS;
  }

  get busy(): number {
    return this.inUse;
  }

  async acquire(): Promise<InferenceSlot> {
    if (this.closed) throw new PddError(ErrorCode.INTERNAL, "engine closed");
    while (this.inUse >= this.capacity) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inUse++;
    this.usage.acquired++;
    return new SimSlot(this);
  }

  /** @internal */
  releaseSlot(heldMs: number): void {
    this.inUse--;
    this.usage.heldMs += heldMs;
    this.waiting.shift()?.();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The image of `tokens`: header, tokens, padding to the model's KV bytes. */
  image(tokens: readonly number[]): Uint8Array {
    const head = MAGIC.length + 32 + 4 + 4 * tokens.length;
    const out = Buffer.alloc(Math.max(head, tokens.length * this.kvBytesPerToken));
    MAGIC.copy(out, 0);
    out.set(this.info.modelFingerprint, MAGIC.length);
    out.writeUInt32LE(tokens.length, MAGIC.length + 32);
    tokens.forEach((t, i) => {
      out.writeUInt32LE(t, MAGIC.length + 36 + 4 * i);
    });
    return out;
  }

  /** The tokens of an image; KV_INTEGRITY when it is not one of this model's. */
  parseImage(image: Uint8Array): number[] {
    const b = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
    const bad = (why: string) => new PddError(ErrorCode.KV_INTEGRITY, `KV state could not be loaded: ${why}`);
    if (b.length < MAGIC.length + 36 || !b.subarray(0, MAGIC.length).equals(MAGIC))
      throw bad("not a simulated-engine image");
    if (!sameBytes(b.subarray(MAGIC.length, MAGIC.length + 32), this.info.modelFingerprint))
      throw bad("image of another model");
    const n = b.readUInt32LE(MAGIC.length + 32);
    if (n > this.contextSize || b.length !== Math.max(MAGIC.length + 36 + 4 * n, n * this.kvBytesPerToken))
      throw bad("truncated or oversize image");
    const tokens = Array.from({ length: n }, (_, i) => b.readUInt32LE(MAGIC.length + 36 + 4 * i));
    if (tokens.some((t) => t >= this.pieces.length)) throw bad("token outside the vocabulary");
    return tokens;
  }
}

class SimSlot implements InferenceSlot {
  /** Every token held; the last is pending when `pending` is set. */
  private tokens: number[] = [];
  private hash = 0;
  private pending = false;
  private released = false;
  private generating = false;
  private readonly since = performance.now();

  constructor(private readonly engine: SimEngine) {}

  get evaluated(): number {
    return this.tokens.length - (this.pending ? 1 : 0);
  }

  get position(): number {
    return this.tokens.length;
  }

  private push(t: number): void {
    this.tokens.push(t);
    this.hash = mix(this.hash, t);
  }

  async prefill(
    tokens: readonly number[],
    opts: { surprisal?: boolean; chunk?: number; onChunk?: (done: number) => boolean | undefined } = {},
  ): Promise<{ surprisal?: Float64Array; done: number }> {
    this.assertUsable();
    if (this.tokens.length + tokens.length > this.engine.contextSize)
      throw new PddError(ErrorCode.INVALID_ARGUMENT, "context full");
    const surprisal = opts.surprisal ? new Float64Array(tokens.length).fill(Number.NaN) : undefined;
    const chunk = Math.max(1, opts.chunk ?? 512);
    for (let start = 0; start < tokens.length; start += chunk) {
      const part = tokens.slice(start, start + chunk);
      await pause(part.length * this.engine.msPerPrefillToken);
      if (this.released) throw new PddError(ErrorCode.INTERNAL, "sequence released during prefill");
      for (const [i, t] of part.entries()) {
        // How unexpected t was: 0 when it is what the model would have said.
        if (surprisal && start + i > 0)
          surprisal[start + i] = t === next(this.hash) ? 0 : 1 + (mix(this.hash, t) % 1000) / 125;
        this.push(t);
      }
      this.engine.usage.prefilled += part.length;
      this.pending = true;
      const done = start + part.length;
      if (done < tokens.length && opts.onChunk?.(done) === false) return { surprisal, done };
    }
    return { surprisal, done: tokens.length };
  }

  async *generate(sampling: Sampling = {}, maxTokens = Number.POSITIVE_INFINITY): AsyncGenerator<number> {
    this.assertUsable();
    if (!this.pending) throw new PddError(ErrorCode.INTERNAL, "nothing to decode from: prefill first");
    if (this.generating) throw new PddError(ErrorCode.INTERNAL, "sequence is already decoding");
    this.generating = true;
    const sampled = (sampling.temperature ?? 0) > 0;
    let due = performance.now();
    try {
      for (let n = 0; n < maxTokens && !this.released; n++) {
        // Drift-free: token n is due one step (at the batch held now) after token n-1 was.
        due += this.engine.msPerDecodeToken * this.engine.decodeSlowdown(this.engine.busy);
        await pause(due - performance.now());
        if (this.released) return;
        if (this.tokens.length >= this.engine.contextSize) return;
        const t = next(sampled ? mix(this.hash, sampling.seed ?? 0) : this.hash);
        this.push(t);
        this.engine.usage.decoded++;
        yield t;
      }
    } finally {
      this.generating = false;
    }
  }

  async exportState(): Promise<Uint8Array> {
    this.assertUsable();
    return this.engine.image(this.tokens.slice(0, this.evaluated));
  }

  async importState(
    image: Uint8Array,
    modelFingerprint: Uint8Array,
    lastToken?: number,
    expected?: readonly number[],
  ): Promise<void> {
    this.assertUsable();
    if (!sameBytes(modelFingerprint, this.engine.info.modelFingerprint)) {
      throw new PddError(ErrorCode.MODEL_MISMATCH, "KV state comes from another model; it cannot be imported");
    }
    const tokens = this.engine.parseImage(image);
    if (expected) sameTokens(tokens, expected); // PDD-KV-013
    this.tokens = [];
    this.hash = 0;
    this.pending = false;
    for (const t of tokens) this.push(t);
    if (lastToken !== undefined && tokens.length > 0) {
      // As llama.cpp's: the last position is taken out and held as pending.
      this.tokens.pop();
      this.hash = this.tokens.reduce(mix, 0);
      this.push(lastToken);
      this.pending = true;
    }
  }

  async reset(): Promise<void> {
    this.assertUsable();
    this.tokens = [];
    this.hash = 0;
    this.pending = false;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.engine.releaseSlot(performance.now() - this.since);
  }

  private assertUsable(): void {
    if (this.released) throw new PddError(ErrorCode.INTERNAL, "sequence already released");
  }
}

/** The model: the token after a history with hash h. */
function next(h: number): number {
  return ALPHABET[h % ALPHABET.length]!;
}

/** Waits `ms` (timers round up to 1 ms); below that, yields to the event loop. */
function pause(ms: number): Promise<unknown> {
  return ms >= 1 ? sleep(ms) : new Promise((resolve) => setImmediate(resolve));
}
