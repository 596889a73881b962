/**
 * The cloud's engine on llama.cpp's llama-server: the InferenceEngine the
 * reference cloud drives, with the inference done by one or more
 * llama-server processes over HTTP (llama-server-client.ts) and each request
 * routed to the least-loaded healthy one (llama-server-pool.ts).
 *
 * The cloud still reads the GGUF the backends serve: spec Appendix B's model
 * fingerprint hashes the weights, which no llama-server endpoint exposes, and
 * the token bytes (PDD-MSG-004) come from the file's vocabulary. Tokenizing
 * uses llama.cpp's own tokenizer on that file, loaded vocabulary-only (no
 * weights). At startup every backend is checked against the file: its
 * /v1/models shape and its /tokenize of a probe text.
 */
import { existsSync } from "node:fs";
import { ErrorCode, PddError } from "../proto/index.js";
import { checkTokenizable } from "./byte-fallback.js";
import { loadVocabulary, type Vocabulary } from "./engine.js";
import type { InferenceEngine, InferenceSlot, ModelInfo } from "./inference.js";
import { LlamaServerClient } from "./llama-server-client.js";
import type { BackendApi } from "./llama-server-openai.js";
import { PromptScorer } from "./llama-server-scorer.js";
import { LlamaServerSlot } from "./llama-server-slot.js";
import { Backend, BackendPool, type BackendStatus } from "./llama-server-pool.js";
import { describeModel, type ModelDescription } from "./model-info.js";
import { SKELETON_TEXT } from "./vocab.js";

export interface LlamaServerEngineOptions {
  /** Base URLs of the llama-server processes, e.g. `http://127.0.0.1:8081`. */
  backends: string[];
  /** The GGUF file the backends serve; default: the path their /props names, when this machine can read it. */
  modelPath?: string;
  /**
   * This machine's path of the backends' `--slot-save-path` (a shared
   * filesystem): with it, KV images come from slot saves; without it, a KV
   * export is refused and the device recomputes.
   */
  slotSaveDir?: string;
  /** Health-check period; default 250 ms. */
  healthIntervalMs?: number;
  /** How long to wait for a backend still loading its model (503); default 60 s. */
  startupTimeoutMs?: number;
  /** Told when a backend leaves or rejoins rotation. */
  onBackendChange?: (b: BackendStatus, why: string) => void;
  /**
   * A GGUF this process scores prompts with for refinement (llama-server-scorer.ts): a small model with the
   * served model's tokenizer. Without it, the engine offers no refinement.
   */
  refineModel?: string;
  /**
   * Where generation goes: llama-server's `/completion` ("native", the default) or the OpenAI-compatible
   * `/v1/completions` with token IDs ("openai", vLLM's API: llama-server-openai.ts). Either way the backend must
   * answer llama-server's /health, /props, /v1/models, /tokenize and /slots.
   */
  backendApi?: BackendApi;
}

/** Parses and normalises a backend URL; a bad one is INVALID_ARGUMENT. */
export function backendUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new PddError(ErrorCode.INVALID_ARGUMENT, `backend "${text}" is not a URL (expected http://HOST:PORT)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new PddError(ErrorCode.INVALID_ARGUMENT, `backend "${text}" is not an http(s) URL`);
  return u.href.replace(/\/+$/, "");
}

async function waitReady(client: LlamaServerClient, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if ((await client.checkHealth()) === "ok") return;
    if (performance.now() > until)
      throw new PddError(ErrorCode.UNAVAILABLE, `llama-server ${client.url} was still loading after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function modelFileOf(o: LlamaServerEngineOptions, served: string): string {
  if (o.modelPath) return o.modelPath;
  if (served && existsSync(served)) return served;
  throw new PddError(
    ErrorCode.INVALID_ARGUMENT,
    `the cloud needs the GGUF file the backends serve (${served || "unnamed"} is not readable here): ` +
      "its model fingerprint hashes the weights (spec B.1); pass it with --model",
  );
}

/** Refuses a backend whose model is not the file's: MODEL_MISMATCH naming the first difference. */
async function checkSameModel(client: LlamaServerClient, d: ModelDescription, path: string, vocab: Vocabulary) {
  const meta = await client.modelMeta();
  const expected = {
    n_vocab: [meta.nVocab, d.info.vocabSize],
    n_params: [meta.nParams, d.parameters],
    n_embd: [meta.nEmbd, d.embedding],
    n_ctx_train: [meta.nCtxTrain, d.info.contextLength],
  } as const;
  for (const [field, [theirs, ours]] of Object.entries(expected))
    if (theirs !== ours)
      throw new PddError(
        ErrorCode.MODEL_MISMATCH,
        `llama-server ${client.url} serves another model than ${path} (${field} ${theirs}, the file's ${ours})`,
      );
  const local = vocab.tokenize(SKELETON_TEXT);
  const remote = await client.tokenize(SKELETON_TEXT);
  if (local.join() !== remote.join())
    throw new PddError(
      ErrorCode.MODEL_MISMATCH,
      `llama-server ${client.url} tokenizes differently from ${path}: another vocabulary with the same shape`,
    );
}

export class LlamaServerEngine implements InferenceEngine {
  private constructor(
    private readonly description: ModelDescription,
    private readonly vocab: Vocabulary,
    readonly pool: BackendPool,
    readonly contextSize: number,
    readonly slotSaveDir: string | undefined,
    /** Scores prompts for refinement; llama-server returns no prompt log-probabilities. */
    readonly scorer: PromptScorer | undefined,
  ) {}

  get scoresPrompts(): boolean {
    return this.scorer !== undefined;
  }

  /** KV images come from slot saves, which this machine reads only through a shared --slot-save-path. */
  get exportsKv(): boolean {
    return this.slotSaveDir !== undefined;
  }

  get scoringModel(): ModelInfo | undefined {
    return this.scorer?.info;
  }

  static async connect(o: LlamaServerEngineOptions): Promise<LlamaServerEngine> {
    if (o.backends.length === 0) throw new PddError(ErrorCode.INVALID_ARGUMENT, "no llama-server backend given");
    const clients = o.backends.map((b) => new LlamaServerClient(backendUrl(b), o.backendApi));
    await Promise.all(clients.map((c) => waitReady(c, o.startupTimeoutMs ?? 60_000)));
    const props = await Promise.all(clients.map((c) => c.props()));
    const path = modelFileOf(o, props[0]!.modelPath);
    const description = describeModel(path);
    const vocab = await loadVocabulary(path);
    let scorer: PromptScorer | undefined;
    try {
      for (const c of clients) await checkSameModel(c, description, path, vocab);
      if (o.refineModel) scorer = await PromptScorer.load(o.refineModel, description.info);
    } catch (e) {
      await vocab.dispose();
      throw e;
    }
    const backends = clients.map((c, i) => new Backend(c, props[i]!.totalSlots, props[i]!.endpointSlots));
    const pool = new BackendPool(backends, { healthIntervalMs: o.healthIntervalMs, onChange: o.onBackendChange });
    const contextSize = Math.min(...props.map((p) => p.slotContext));
    return new LlamaServerEngine(description, vocab, pool, contextSize, o.slotSaveDir, scorer);
  }

  get info(): ModelInfo {
    return this.description.info;
  }

  get pieces(): Uint8Array[] {
    return this.description.pieces;
  }

  get kvBytesPerToken(): number {
    return this.description.kvBytesPerToken;
  }

  /** Every backend's slots: the cloud's admission counts them all. */
  get capacity(): number {
    return this.pool.capacity;
  }

  get busy(): number {
    return this.pool.active;
  }

  backends(): BackendStatus[] {
    return this.pool.status();
  }

  tokenize(text: string): number[] {
    checkTokenizable(this.description.untokenizable, text);
    const ids = this.vocab.tokenize(text);
    const bos = this.vocab.bos;
    return this.description.addBos && bos !== undefined ? [bos, ...ids] : ids;
  }

  tokenizeContinuation(text: string): number[] {
    checkTokenizable(this.description.untokenizable, text);
    return this.vocab.tokenizeContinuation(text);
  }

  tokenizeTemplated(text: string): number[] {
    checkTokenizable(this.description.untokenizable, text);
    const ids = this.vocab.tokenizeSpecial(text);
    const bos = this.vocab.bos;
    return this.description.addBos && bos !== undefined ? [bos, ...ids] : ids;
  }

  bytes(ids: readonly number[]): Uint8Array {
    return Buffer.concat(ids.map((t) => this.pieces[t] ?? new Uint8Array()));
  }

  isEndOfGeneration(id: number): boolean {
    return this.vocab.isEndOfGeneration(id);
  }

  async acquire(): Promise<InferenceSlot> {
    const { backend, idSlot } = await this.pool.acquire();
    return new LlamaServerSlot(this.pool, backend, idSlot, this.slotSaveDir, this.pieces, this.scorer);
  }

  async close(): Promise<void> {
    this.pool.close();
    await this.scorer?.close();
    await this.vocab.dispose();
  }
}
