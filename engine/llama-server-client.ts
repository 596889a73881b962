/**
 * One llama-server over HTTP: the endpoints the cloud uses, with their field
 * names as llama.cpp's tools/server (release v0.4.0, the one node-llama-cpp
 * bundles) spells them. Every failure is a PddError naming the backend and
 * the cause: unreachable, not a llama-server, or an error it answered.
 * @internal
 */
import { ErrorCode, PddError } from "../proto/index.js";
import { type BackendApi, openaiChunk, openaiCompletionBody, openaiTokens } from "./llama-server-openai.js";

/** GET /props, the fields the cloud reads. */
export interface ServerProps {
  /** `--parallel`: slots, each one sequence. */
  totalSlots: number;
  /** Positions per slot (`default_generation_settings.n_ctx`). */
  slotContext: number;
  /** The GGUF the server loaded, as a path on its machine. */
  modelPath: string;
  endpointSlots: boolean;
  endpointMetrics: boolean;
}

/** GET /v1/models `data[0].meta`: what the server says about its model. */
export interface ServerModelMeta {
  nVocab: number;
  nCtxTrain: number;
  nEmbd: number;
  nParams: number;
}

/** One streamed /completion chunk (`stream: true`), the fields the cloud reads. */
export interface CompletionChunk {
  /** The token this chunk carries (none on a final chunk). */
  tokens: number[];
  /** Tokens generated so far in this request, this one included: a jump says a chunk was held back. */
  tokensPredicted: number;
  idSlot: number;
  stop: boolean;
  /** "eos", "limit", "word" or "none" (final chunk only). */
  stopType?: string;
}

export interface CompletionParams {
  prompt: readonly number[];
  /** -1: until EOS or the context's end. */
  nPredict: number;
  idSlot?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/** The wire body of /completion: token IDs in, token IDs out, the prompt cache on (it is what makes resuming cheap). */
export function completionBody(p: CompletionParams, stream: boolean): Record<string, unknown> {
  return {
    prompt: p.prompt,
    n_predict: p.nPredict,
    stream,
    return_tokens: true,
    cache_prompt: true,
    id_slot: p.idSlot ?? -1,
    temperature: p.temperature ?? 0,
    ...(p.topK ? { top_k: p.topK } : {}),
    ...(p.topP ? { top_p: p.topP } : {}),
    ...(p.seed !== undefined && Number.isFinite(p.seed) ? { seed: p.seed } : {}),
  };
}

/**
 * One connection per request. llama-server (cpp-httplib) closes kept-alive
 * connections that Node's fetch then reuses: the next request on one fails
 * before any answer with "other side closed" (UND_ERR_SOCKET), which took
 * healthy backends out of rotation and failed requests in the conformance
 * run. A new loopback or LAN connection costs far less than a decode step.
 */
const NO_REUSE = { connection: "close" };

const unreachable = (url: string, e: unknown) => {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (e as Error).message;
  return new PddError(ErrorCode.UNAVAILABLE, `llama-server ${url} is unreachable (${why})`, {
    cause: e,
    retryable: true,
  });
};

export class LlamaServerClient {
  constructor(
    /** The base URL, without a trailing slash. */
    readonly url: string,
    /** Where generation goes: `/completion`, or `/v1/completions` (llama-server-openai.ts); the rest stays native. */
    readonly api: BackendApi = "native",
    private readonly timeoutMs = 10_000,
  ) {}

  private get completionPath(): string {
    return this.api === "openai" ? "/v1/completions" : "/completion";
  }

  private completionBody(p: CompletionParams, stream: boolean): Record<string, unknown> {
    return this.api === "openai" ? openaiCompletionBody(p, stream) : completionBody(p, stream);
  }

  /**
   * GET /health: "ok" when it answers 200; "down" when it answers anything
   * else (503 while loading) or the connection fails; "slow" when `signal`
   * (a deadline) ends first, which a busy machine causes as well as a hung
   * server.
   */
  async health(signal: AbortSignal): Promise<"ok" | "down" | "slow"> {
    try {
      const res = await fetch(`${this.url}/health`, { signal, headers: NO_REUSE });
      await res.body?.cancel();
      return res.status === 200 ? "ok" : "down";
    } catch {
      return signal.aborted ? "slow" : "down";
    }
  }

  /** GET /health for a backend the cloud is about to use: down, loading and "not a llama-server" are told apart. */
  async checkHealth(): Promise<"ok" | "loading"> {
    const body = await this.getJson("/health", [200, 503]);
    const status = (body as { status?: unknown }).status;
    if (status === "ok") return "ok";
    const err = (body as { error?: { message?: unknown } }).error;
    if (err && typeof err.message === "string") return "loading";
    throw this.notLlamaServer(`GET /health answered ${JSON.stringify(body).slice(0, 80)}`);
  }

  async props(): Promise<ServerProps> {
    const p = (await this.getJson("/props")) as Record<string, unknown>;
    const dgs = p.default_generation_settings as { n_ctx?: unknown } | undefined;
    if (typeof p.total_slots !== "number" || typeof dgs?.n_ctx !== "number")
      throw this.notLlamaServer("GET /props has no total_slots or default_generation_settings.n_ctx");
    return {
      totalSlots: p.total_slots,
      slotContext: dgs.n_ctx,
      modelPath: String(p.model_path ?? ""),
      endpointSlots: p.endpoint_slots === true,
      endpointMetrics: p.endpoint_metrics === true,
    };
  }

  async modelMeta(): Promise<ServerModelMeta> {
    const m = (await this.getJson("/v1/models")) as { data?: { meta?: Record<string, unknown> }[] };
    const meta = m.data?.[0]?.meta;
    if (!meta || typeof meta.n_vocab !== "number") throw this.notLlamaServer("GET /v1/models has no data[0].meta");
    return {
      nVocab: meta.n_vocab,
      nCtxTrain: Number(meta.n_ctx_train),
      nEmbd: Number(meta.n_embd),
      nParams: Number(meta.n_params),
    };
  }

  /** GET /slots (`--slots`, on by default): how many slots are decoding now, for any client. */
  async busySlots(signal?: AbortSignal): Promise<number> {
    const slots = await this.getJson("/slots", [200], signal);
    if (!Array.isArray(slots)) throw this.notLlamaServer("GET /slots is not an array");
    return slots.filter((s: { is_processing?: unknown }) => s.is_processing === true).length;
  }

  /** POST /tokenize, no BOS: the server's tokenization of `text`. */
  async tokenize(text: string): Promise<number[]> {
    const r = (await this.postJson("/tokenize", { content: text, add_special: false })) as { tokens?: number[] };
    if (!Array.isArray(r.tokens)) throw this.notLlamaServer("POST /tokenize has no tokens");
    return r.tokens;
  }

  /** POST /completion without streaming: every generated token at once. */
  async complete(p: CompletionParams, signal?: AbortSignal): Promise<{ tokens: number[]; idSlot: number }> {
    const r = (await this.postJson(this.completionPath, this.completionBody(p, false), signal)) as {
      tokens?: number[];
      id_slot?: number;
    };
    if (this.api === "openai") return { tokens: openaiTokens(r, this.url), idSlot: p.idSlot ?? -1 };
    if (!Array.isArray(r.tokens)) throw this.notLlamaServer("POST /completion returned no tokens (return_tokens)");
    return { tokens: r.tokens, idSlot: Number(r.id_slot ?? -1) };
  }

  /**
   * POST /completion with `stream: true`: server-sent events, one token each,
   * the last one with `stop: true`. Aborting `signal` closes the connection,
   * which makes llama-server cancel the task and free its slot.
   *
   * A stream that ends without that last event is a backend that died:
   * UNAVAILABLE. Node's fetch does not say so itself: llama-server answers
   * `Connection: close` (NO_REUSE), and undici then takes the connection's
   * close as the end of the body even without the chunked coding's last
   * chunk, so a killed backend's stream looked like a finished answer (an
   * empty one when it died before the first token, issue 19).
   */
  async *stream(p: CompletionParams, signal: AbortSignal): AsyncGenerator<CompletionChunk> {
    const res = await this.post(this.completionPath, this.completionBody(p, true), signal);
    if (!res.body) throw this.notLlamaServer(`POST ${this.completionPath} streamed no body`);
    const decoder = new TextDecoder();
    let buffered = "";
    let received = 0;
    for await (const part of res.body) {
      buffered += decoder.decode(part as Uint8Array, { stream: true });
      let end = buffered.indexOf("\n\n");
      while (end >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        end = buffered.indexOf("\n\n");
        const chunk = this.parseEvent(event, received);
        if (!chunk) continue;
        received += chunk.tokens.length;
        yield chunk;
        if (chunk.stop) return;
      }
    }
    if (!signal.aborted)
      throw new PddError(ErrorCode.UNAVAILABLE, `llama-server ${this.url} closed the stream before its last event`, {
        retryable: true,
      });
  }

  /** POST /slots/{id}?action=save: the slot's KV state into `--slot-save-path`/`filename`. */
  async saveSlot(idSlot: number, filename: string): Promise<void> {
    await this.postJson(`/slots/${idSlot}?action=save`, { filename });
  }

  private parseEvent(event: string, received: number): CompletionChunk | undefined {
    const line = event.split("\n").find((l) => l.startsWith("data: ") || l.startsWith("error: "));
    if (!line || line === "data: [DONE]") return undefined;
    const json = JSON.parse(line.slice(line.indexOf(" ") + 1)) as Record<string, unknown>;
    if (line.startsWith("error: ") || json.error) throw this.answered(json);
    if (this.api === "openai") return openaiChunk(json, received, this.url);
    return {
      tokens: Array.isArray(json.tokens) ? (json.tokens as number[]) : [],
      tokensPredicted: Number(json.tokens_predicted ?? 0),
      idSlot: Number(json.id_slot ?? -1),
      stop: json.stop === true,
      stopType: typeof json.stop_type === "string" ? json.stop_type : undefined,
    };
  }

  private deadline(signal?: AbortSignal): AbortSignal {
    const t = AbortSignal.timeout(this.timeoutMs);
    return signal ? AbortSignal.any([signal, t]) : t;
  }

  private async getJson(path: string, ok = [200], signal?: AbortSignal): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { signal: this.deadline(signal), headers: NO_REUSE });
    } catch (e) {
      throw unreachable(this.url, e);
    }
    return this.json(res, `GET ${path}`, ok);
  }

  private async postJson(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.json(await this.post(path, body, signal), `POST ${path.replace(/\?.*/, "")}`, [200]);
  }

  private async post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...NO_REUSE },
        body: JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw unreachable(this.url, e);
    }
    if (res.status !== 200) await this.json(res, `POST ${path.replace(/\?.*/, "")}`, [200]);
    return res;
  }

  private async json(res: Response, what: string, ok: number[]): Promise<unknown> {
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw this.notLlamaServer(`${what} answered ${res.status} with no JSON`);
    }
    if (ok.includes(res.status)) return body;
    if (res.status === 404) throw this.notLlamaServer(`${what} answered 404`);
    throw this.answered(body as Record<string, unknown>, res.status);
  }

  private answered(body: Record<string, unknown>, status?: number): PddError {
    const err = body.error as { message?: unknown; code?: unknown } | undefined;
    const message = typeof err?.message === "string" ? err.message : JSON.stringify(body).slice(0, 200);
    const code = Number(err?.code ?? status ?? 500);
    return new PddError(
      code === 503 ? ErrorCode.UNAVAILABLE : ErrorCode.INTERNAL,
      `llama-server ${this.url} answered ${code}: ${message}`,
      { retryable: code === 503 },
    );
  }

  private notLlamaServer(why: string): PddError {
    return new PddError(ErrorCode.INVALID_ARGUMENT, `${this.url} is not a llama-server: ${why}`);
  }
}
