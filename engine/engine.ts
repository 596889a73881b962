/**
 * The llama.cpp engine layer shared by the reference peers: one model, one
 * context with a pool of sequences (so the cloud batches many requests), and
 * the operations P/D-Device needs — batch prefill with optional per-token
 * surprisal, greedy or seeded decoding, catch-up over received tokens, and
 * export/import of a sequence's KV state guarded by fingerprints.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
// Types only: the binding itself loads in llamaRuntime(), when a llama model is
// loaded, so importing engine/ (SimEngine, the interface) never loads it.
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { ErrorCode, PddError } from "../proto/index.js";
import { checkTokenizable, type Untokenizable } from "./byte-fallback.js";
import { sameBytes } from "./fingerprint.js";
import { readSeqStateHeader } from "./llama-server-kv.js";
import { checkSeqState, sameTokens } from "./seq-state-check.js";
import { serializeSampling } from "./serial-sampling.js";
import { describeModel } from "./model-info.js";
import type { InferenceEngine, InferenceSlot, ModelInfo, Sampling, TokenLogprob } from "./inference.js";

/**
 * The GGUF header (validated before llama.cpp sees the file) and the
 * fingerprints; anything wrong with the file (a directory, a truncated
 * model) is INVALID_ARGUMENT naming it, never a stack trace (issue 16).
 */
function readModelFile(path: string) {
  try {
    return describeModel(path);
  } catch (e) {
    if (e instanceof PddError) throw e;
    throw new PddError(ErrorCode.INVALID_ARGUMENT, `${path} is not a usable GGUF model: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

let shared: Promise<Llama> | undefined;
/** The process's llama.cpp binding: CPU, prebuilt binary, never builds. */
export function llamaRuntime(): Promise<Llama> {
  shared ??= import("node-llama-cpp").then(({ getLlama, LlamaLogLevel }) =>
    getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false }),
  );
  return shared;
}

/** llama.cpp's tokenizer of a GGUF, loaded vocabulary-only (no weights): what the llama-server engine tokenizes with. */
export interface Vocabulary {
  /** No BOS, no special-token parsing. */
  tokenize(text: string): number[];
  /** No BOS; text spelling a control token becomes it. */
  tokenizeSpecial(text: string): number[];
  tokenizeContinuation(text: string): number[];
  isEndOfGeneration(id: number): boolean;
  readonly bos: number | undefined;
  dispose(): Promise<void>;
}

export async function loadVocabulary(modelPath: string): Promise<Vocabulary> {
  const model = await (await llamaRuntime()).loadModel({ modelPath, vocabOnly: true });
  return {
    tokenize: (text) => model.tokenize(text, false) as number[],
    tokenizeSpecial: (text) => model.tokenize(text, true) as number[],
    tokenizeContinuation: (text) => model.tokenize(text, false, "trimLeadingSpace") as number[],
    isEndOfGeneration: (id) => model.isEogToken(id as Token),
    bos: model.tokens.bos ?? undefined,
    dispose: () => model.dispose(),
  };
}

export interface EngineOptions {
  modelPath: string;
  /**
   * CPU threads for evaluation; default: all cores but one (at least 1).
   * Using every core costs far more in thread synchronisation than it gains
   * on small models (measured: 0.6 ms/token on 1 thread, 9 ms on 2 of 2 cores).
   */
  threads?: number;
  /** Positions per sequence; default min(model's, 4096). */
  contextSize?: number;
  /** Concurrent sequences (requests) in the context; default 1. */
  sequences?: number;
  batchSize?: number;
}

/** A token's TokenLogprob from node-llama-cpp's probabilities (after the sampling chain; greedy: the model's softmax). */
function tokenLogprob(probabilities: ReadonlyMap<Token, number>, token: number, top: number): TokenLogprob {
  const ln = (p: number) => Math.log(Math.max(p, Number.MIN_VALUE));
  const best = [...probabilities].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    logprob: ln(probabilities.get(token as Token) ?? 0),
    top: best.map(([id, p]) => ({ id: id as number, logprob: ln(p) })),
  };
}

export class Engine implements InferenceEngine {
  readonly info: ModelInfo;
  readonly givesLogprobs = true;
  /** Bytes of every token (spec PDD-MSG-004). */
  readonly pieces: Uint8Array[];
  readonly addBos: boolean;
  readonly contextSize: number;
  readonly capacity: number;
  /** Bytes of f16 K and V cache per position (for estimating KV image sizes). */
  readonly kvBytesPerToken: number;
  /** The model's layer count, which a KV image must have (seq-state-check.ts). */
  readonly layers: number;
  private readonly free: LlamaContextSequence[] = [];
  private waiting: ((s: LlamaContextSequence) => void)[] = [];
  private created = 0;
  private inUse = 0;

  private constructor(
    readonly modelPath: string,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    info: ModelInfo,
    pieces: Uint8Array[],
    addBos: boolean,
    kvBytesPerToken: number,
    layers: number,
    private readonly untokenizable: Untokenizable | undefined,
  ) {
    this.kvBytesPerToken = kvBytesPerToken;
    this.layers = layers;
    this.info = info;
    this.pieces = pieces;
    this.addBos = addBos;
    this.contextSize = context.contextSize;
    this.capacity = context.totalSequences;
  }

  /** Loads a GGUF model. A missing or malformed file is INVALID_ARGUMENT, never a crash. */
  static async load(options: EngineOptions): Promise<Engine> {
    const described = readModelFile(options.modelPath);
    const llama = await llamaRuntime();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: options.modelPath });
    } catch (e) {
      throw new PddError(
        ErrorCode.INVALID_ARGUMENT,
        `llama.cpp cannot load ${options.modelPath}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const trained = model.trainContextSize;
    const context = await model.createContext({
      sequences: options.sequences ?? 1,
      contextSize: options.contextSize ?? Math.min(trained, 4096),
      threads: options.threads ?? Math.max(1, availableParallelism() - 1),
      batchSize: options.batchSize,
    });
    serializeSampling(context);
    return new Engine(
      options.modelPath,
      model,
      context,
      { ...described.info, contextLength: trained },
      described.pieces,
      described.addBos,
      described.kvBytesPerToken,
      described.layers,
      described.untokenizable,
    );
  }

  /** Tokenizes a prompt: BOS when the model asks for it, no chat template (PDD-REQ-001). */
  tokenize(text: string): number[] {
    checkTokenizable(this.untokenizable, text);
    const ids = this.model.tokenize(text, false) as number[];
    const bos = this.model.tokens.bos;
    return this.addBos && bos !== null ? [bos, ...ids] : ids;
  }

  /** Tokenizes text that continues earlier text: no BOS, no added space prefix. */
  tokenizeContinuation(text: string): number[] {
    checkTokenizable(this.untokenizable, text);
    return this.model.tokenize(text, false, "trimLeadingSpace") as number[];
  }

  /** Tokenizes a templated chat: BOS when the model asks for it, control tokens parsed (llama-server's chat). */
  tokenizeTemplated(text: string): number[] {
    checkTokenizable(this.untokenizable, text);
    const ids = this.model.tokenize(text, true) as number[];
    const bos = this.model.tokens.bos;
    return this.addBos && bos !== null ? [bos, ...ids] : ids;
  }

  /** The bytes of `ids`, concatenated. */
  bytes(ids: readonly number[]): Uint8Array {
    return Buffer.concat(ids.map((t) => this.pieces[t] ?? new Uint8Array()));
  }

  isEndOfGeneration(id: number): boolean {
    return this.model.isEogToken(id as Token);
  }

  /** Sequences in use. */
  get busy(): number {
    return this.inUse;
  }

  /** Waits for a free sequence. */
  async acquire(): Promise<Slot> {
    let seq = this.free.pop();
    if (!seq && this.created < this.capacity) {
      seq = this.context.getSequence();
      this.created++;
    }
    if (!seq) seq = await new Promise<LlamaContextSequence>((resolve) => this.waiting.push(resolve));
    this.inUse++;
    return new Slot(this, seq);
  }

  /** @internal */
  async release(seq: LlamaContextSequence): Promise<void> {
    this.inUse--;
    if (this.closed) return; // the context is gone, and its sequences with it
    await seq.clearHistory();
    // A waiter counts itself in use when acquire() resumes.
    const w = this.waiting.shift();
    if (w) w(seq);
    else this.free.push(seq);
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.context.dispose();
    await this.model.dispose();
  }
}

/**
 * One sequence. It keeps the last token it was given un-evaluated ("pending"),
 * because llama.cpp produces the next token while it evaluates one: prefill
 * evaluates all tokens but the last, and decoding starts from the pending one.
 */
export class Slot implements InferenceSlot {
  private pending: number | undefined;
  private released = false;
  private generating = false;

  constructor(
    readonly engine: Engine,
    private readonly seq: LlamaContextSequence,
  ) {}

  /** Tokens in the KV cache. */
  get evaluated(): number {
    return this.seq.nextTokenIndex;
  }

  /** Tokens in the KV cache plus the pending one. */
  get position(): number {
    return this.seq.nextTokenIndex + (this.pending === undefined ? 0 : 1);
  }

  /**
   * Evaluates `tokens` after what the sequence holds, in chunks of `chunk`
   * tokens; `onChunk` returns false to stop early. With `surprisal`, returns
   * -ln p(token i | tokens before i) for every token but the first (index 0
   * of the result is NaN), from the logits the prefill computes anyway.
   */
  async prefill(
    tokens: readonly number[],
    opts: {
      surprisal?: boolean;
      logprobs?: number;
      chunk?: number;
      onChunk?: (done: number) => boolean | undefined;
    } = {},
  ): Promise<{ surprisal?: Float64Array; logprobs?: (TokenLogprob | undefined)[]; done: number }> {
    this.assertUsable();
    const offset = this.pending === undefined ? 0 : 1; // a pending token leads `tokens`
    const all = this.pending === undefined ? [...tokens] : [this.pending, ...tokens];
    if (all.length === 0) return { done: 0 };
    const toEval = all.slice(0, -1);
    this.pending = all[all.length - 1];
    const surprisal = opts.surprisal ? new Float64Array(tokens.length).fill(Number.NaN) : undefined;
    const logprobs = opts.logprobs !== undefined ? new Array<TokenLogprob | undefined>(tokens.length) : undefined;
    const chunk = opts.chunk ?? 512;
    let done = 0;
    for (let start = 0; start < toEval.length; start += chunk) {
      const part = toEval.slice(start, start + chunk);
      if (surprisal || logprobs) {
        const out = await this.seq.controlledEvaluate(
          part.map((t) => [t as Token, { generateNext: { probabilities: true } }]),
        );
        for (let i = 0; i < part.length; i++) {
          const nextIndex = start + i + 1 - offset; // index in `tokens` of the token this position predicts
          const probabilities = out[i]?.next.probabilities;
          if (nextIndex < 0 || nextIndex >= tokens.length) continue;
          const p = probabilities?.get(tokens[nextIndex]! as Token) ?? 0;
          if (surprisal) surprisal[nextIndex] = -Math.log(Math.max(p, 1e-30));
          if (logprobs && probabilities)
            logprobs[nextIndex] = tokenLogprob(probabilities, tokens[nextIndex]!, opts.logprobs ?? 0);
        }
      } else {
        await this.seq.evaluateWithoutGeneratingNewTokens(part as Token[]);
      }
      const evaluated = start + part.length;
      done = Math.min(tokens.length, evaluated + 1 - offset);
      if (evaluated < toEval.length && opts.onChunk?.(done) === false) {
        // Stopped early: the first token not evaluated becomes the pending one;
        // `done` tokens of `tokens` are now held (evaluated or pending).
        this.pending = all[evaluated];
        return { surprisal, logprobs, done };
      }
    }
    return { surprisal, logprobs, done: tokens.length };
  }

  /**
   * Decodes up to `maxTokens` tokens from the pending token. Stops at once
   * when the consumer stops iterating (takeover, cancel). The last token
   * yielded stays pending, so decoding can resume later. End-of-generation
   * tokens are yielded like any other: the caller decides what they end.
   */
  async *generate(
    sampling: Sampling = {},
    maxTokens = Number.POSITIVE_INFINITY,
    logprobs?: { top: number; each: (lp: TokenLogprob) => void },
  ): AsyncGenerator<number> {
    this.assertUsable();
    if (this.pending === undefined) throw new PddError(ErrorCode.INTERNAL, "nothing to decode from: prefill first");
    if (this.generating) throw new PddError(ErrorCode.INTERNAL, "sequence is already decoding");
    this.generating = true;
    const options = {
      temperature: sampling.temperature ?? 0,
      topK: sampling.topK || undefined,
      topP: sampling.topP || undefined,
      seed: sampling.seed,
      // Without it node-llama-cpp ends the iterator at EOS without yielding
      // it, and the caller cannot tell EOS from a spent budget (PDD-IDX-004).
      yieldEogToken: true,
    };
    const first = [this.pending as Token];
    const gen = logprobs
      ? this.seq.evaluateWithMetadata(first, { probabilities: true }, options)
      : this.seq.evaluate(first, options);
    let n = 0;
    try {
      while (n < maxTokens) {
        const r = await gen.next();
        if (r.done) break;
        const token = (typeof r.value === "number" ? r.value : r.value.token) as number;
        if (logprobs && typeof r.value !== "number")
          logprobs.each(tokenLogprob(r.value.probabilities, token, logprobs.top));
        this.pending = token;
        n++;
        yield token;
      }
    } finally {
      this.generating = false;
      await gen.return(undefined);
    }
  }

  /** Saves the KV state (the tokens evaluated so far). */
  async exportState(): Promise<Uint8Array> {
    this.assertUsable();
    const dir = mkdtempSync(join(tmpdir(), "pdd-kv-"));
    try {
      const file = join(dir, "state.bin");
      await this.seq.saveStateToFile(file);
      return new Uint8Array(await readFile(file));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Replaces this sequence's state with an exported one. Refused with
   * MODEL_MISMATCH unless the exporting model's fingerprint is this model's
   * (PDD-KV-002): a foreign state can crash llama.cpp.
   */
  /**
   * `lastToken`, when given, is the last token the image covers: it is taken
   * out of the cache again and held as the pending token, so decoding can
   * continue from it exactly as after a prefill.
   */
  async importState(
    image: Uint8Array,
    modelFingerprint: Uint8Array,
    lastToken?: number,
    tokens?: readonly number[],
  ): Promise<void> {
    this.assertUsable();
    if (!sameBytes(modelFingerprint, this.engine.info.modelFingerprint)) {
      throw new PddError(ErrorCode.MODEL_MISMATCH, "KV state comes from another model; it cannot be imported");
    }
    // llama.cpp trusts the header: a hostile one costs memory or fails the next evaluation (issue 13).
    checkSeqState(image, { contextSize: this.engine.contextSize, layers: this.engine.layers });
    if (tokens) sameTokens(readSeqStateHeader(image).tokens, tokens);
    const dir = mkdtempSync(join(tmpdir(), "pdd-kv-"));
    try {
      const file = join(dir, "state.bin");
      await writeFile(file, image);
      // The sequence may hold a partial local prefill; the image replaces it.
      await this.seq.clearHistory();
      this.pending = undefined;
      await this.seq.loadStateFromFile(file, { acceptRisk: true });
      if (lastToken !== undefined && this.seq.nextTokenIndex > 0) {
        const n = this.seq.nextTokenIndex;
        await this.seq.eraseContextTokenRanges([{ start: n - 1, end: n }]);
        this.pending = lastToken;
      }
    } catch (e) {
      throw new PddError(ErrorCode.KV_INTEGRITY, `KV state could not be loaded: ${(e as Error).message}`, { cause: e });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Empties the sequence (KV cache and pending token). */
  async reset(): Promise<void> {
    this.assertUsable();
    await this.seq.clearHistory();
    this.pending = undefined;
  }

  /** Frees the sequence for another request; idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.engine.release(this.seq);
  }

  private assertUsable(): void {
    if (this.released) throw new PddError(ErrorCode.INTERNAL, "sequence already released");
  }
}

/** A chat message for a template: text only. */
export interface TemplateMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * Compiles a Jinja chat template (GGUF `tokenizer.chat_template`) with
 * node-llama-cpp's JinjaTemplateChatWrapper. The returned function renders a
 * chat with the generation prompt as text: BOS dropped (tokenize() adds it
 * when the model wants one), EOS/EOT spelled as `eosText`, other control
 * tokens as their text, which tokenizeTemplated() turns back into the control
 * tokens. Throws when node-llama-cpp cannot use the template.
 */
export async function compileChatTemplate(
  template: string,
  eosText: string,
): Promise<(messages: readonly TemplateMessage[]) => string> {
  const { JinjaTemplateChatWrapper, SpecialTokensText } = await import("node-llama-cpp");
  const wrapper = new JinjaTemplateChatWrapper({ template });
  const special = { BOS: "", EOS: eosText, EOT: eosText, NL: "\n", SEP: "" } as const;
  return (messages) => {
    const chatHistory = [
      ...messages.map((m) =>
        m.role === "assistant" ? { type: "model" as const, response: [m.content] } : { type: m.role, text: m.content },
      ),
      { type: "model" as const, response: [] },
    ];
    return wrapper
      .generateContextState({ chatHistory })
      .contextText.values.map((v) =>
        typeof v === "string" || v instanceof SpecialTokensText ? v.toString() : special[v.value],
      )
      .join("");
  };
}
