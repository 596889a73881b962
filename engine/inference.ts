/**
 * What the reference peers need from an inference engine. Two implement it:
 * `Engine` (llama.cpp through node-llama-cpp) and `SimEngine` (deterministic
 * tokens with the timing of a published measurement, for benchmarks and soak
 * runs that need thousands of devices on one machine).
 *
 * This file owns every type the interface needs and imports nothing, so that
 * code written against the interface (the peers, SimEngine) never loads
 * node-llama-cpp.
 */

/** What a peer announces about its model (spec Appendix B fingerprints). */
export interface ModelInfo {
  name: string;
  modelFingerprint: Uint8Array;
  tokenizerFingerprint: Uint8Array;
  vocabSize: number;
  contextLength: number;
  architecture: string;
}

/** Decoding settings; the default is greedy. */
export interface Sampling {
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/** One backend of an engine that serves through others (llama-server), as the cloud's metrics report it. */
export interface BackendStatus {
  url: string;
  healthy: boolean;
  slots: number;
  /** This cloud's requests on it now. */
  active: number;
  /** Slots it reported decoding at the last health check (any client's). */
  reportedBusy: number;
  /** Times it was taken out of rotation. */
  failures: number;
}

/** A token's natural-log probability, and the most likely tokens at its position (highest first). */
export interface TokenLogprob {
  logprob: number;
  top: { id: number; logprob: number }[];
}

export interface InferenceEngine {
  readonly info: ModelInfo;
  /** True when generate() and prefill() can give per-token log-probabilities (TokenLogprob); default false. */
  readonly givesLogprobs?: boolean;
  /** False when prefill cannot give surprisal (the cloud then refuses refinement); default true. */
  readonly scoresPrompts?: boolean;
  /** False when a sequence's KV state cannot be exported (the cloud then offers no KV format and refuses KV); default true. */
  readonly exportsKv?: boolean;
  /**
   * The model whose surprisal prefill gives, when it is not the served one (spec §8.5: same tokenizer, PDD-REF-010),
   * with `contextLength` the positions it runs with; undefined when the served model scores prompts.
   */
  readonly scoringModel?: ModelInfo;
  /** The backends it serves through, when it has any (for the cloud's metrics). */
  backends?(): BackendStatus[];
  /** Bytes of every token (spec PDD-MSG-004). */
  readonly pieces: Uint8Array[];
  /** Positions per sequence. */
  readonly contextSize: number;
  /** Concurrent sequences. */
  readonly capacity: number;
  /** Bytes of KV image per position (for the planner's transfer estimate). */
  readonly kvBytesPerToken: number;
  /** Sequences in use. */
  readonly busy: number;
  /** Tokenizes a prompt: BOS when the model asks for it, no chat template (PDD-REQ-001). */
  tokenize(text: string): number[];
  /** Tokenizes text that continues earlier text: no BOS, no added space prefix. */
  tokenizeContinuation(text: string): number[];
  /**
   * Tokenizes a chat prompt rendered by the model's template, as llama-server
   * tokenizes its chats: BOS when the model asks for it, and text that spells
   * a control token (`<|im_start|>`) becomes that token (parse_special).
   */
  tokenizeTemplated(text: string): number[];
  /** The bytes of `ids`, concatenated. */
  bytes(ids: readonly number[]): Uint8Array;
  isEndOfGeneration(id: number): boolean;
  /** Waits for a free sequence. */
  acquire(): Promise<InferenceSlot>;
  close(): Promise<void>;
}

/**
 * One sequence. It keeps the last token it was given un-evaluated ("pending"):
 * prefill evaluates all tokens but the last, and decoding starts from it.
 */
export interface InferenceSlot {
  /** Tokens in the KV cache. */
  readonly evaluated: number;
  /** Tokens in the KV cache plus the pending one. */
  readonly position: number;
  /**
   * Evaluates `tokens` after what the sequence holds, in chunks; `onChunk`
   * returns false to stop early (`done` then says how many are held). With
   * `surprisal`, -ln p(token i | tokens before i) for every token but the first.
   * With `logprobs` (engines that give them), each token's TokenLogprob with
   * that many alternatives; undefined for a first token that has no predecessor.
   */
  prefill(
    tokens: readonly number[],
    opts?: {
      surprisal?: boolean;
      logprobs?: number;
      chunk?: number;
      onChunk?: (done: number) => boolean | undefined;
    },
  ): Promise<{ surprisal?: Float64Array; logprobs?: (TokenLogprob | undefined)[]; done: number }>;
  /**
   * Decodes up to `maxTokens` from the pending token; stops when the consumer
   * stops. With `logprobs` (engines that give them), `each` gets every
   * token's TokenLogprob (with `top` alternatives) before it is yielded.
   */
  generate(
    sampling?: Sampling,
    maxTokens?: number,
    logprobs?: { top: number; each: (lp: TokenLogprob) => void },
  ): AsyncGenerator<number>;
  /** The KV state (the tokens evaluated so far) as an opaque image. */
  exportState(): Promise<Uint8Array>;
  /**
   * Replaces the state with an image: MODEL_MISMATCH from another model, KV_INTEGRITY when unloadable,
   * or when `tokens` is given and the image covers other tokens (PDD-KV-013).
   */
  importState(
    image: Uint8Array,
    modelFingerprint: Uint8Array,
    lastToken?: number,
    tokens?: readonly number[],
  ): Promise<void>;
  reset(): Promise<void>;
  /** Frees the sequence for another request; idempotent. */
  release(): Promise<void>;
}
