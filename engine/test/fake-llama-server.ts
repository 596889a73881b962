/**
 * A small stand-in for llama.cpp's llama-server (HTTP, port 0) that speaks
 * the endpoints the llama-server engine uses, with their field names, and
 * decodes a fixed function of the tokens so far. It can hold back chunks as
 * llama-server does for tokens that end inside a UTF-8 character, answer 503
 * while "loading", and die. Its `/v1/completions` speaks vLLM's OpenAI-compatible
 * form as vLLM's documentation gives it (token IDs as logprobs.tokens
 * "token_id:N" with `return_tokens_as_token_ids`), for `--backend-api openai`;
 * vLLM itself was not run here. @internal test support
 */
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { toServerImage } from "../llama-server-kv.js";
import { describeModel } from "../model-info.js";

export interface FakeModel {
  modelPath: string;
  nVocab: number;
  nParams: number;
  nEmbd: number;
  nCtxTrain: number;
  tokenize: (text: string) => number[];
}

/** What a fake serving the GGUF at `modelPath` says about it, with `tokenize` (no BOS) as its /tokenize. */
export function fakeModel(modelPath: string, tokenize: (text: string) => number[]): FakeModel {
  const d = describeModel(modelPath);
  const { vocabSize: nVocab, contextLength: nCtxTrain } = d.info;
  return { modelPath, nVocab, nParams: d.parameters, nEmbd: d.embedding, nCtxTrain, tokenize };
}

export interface FakeOptions {
  model: FakeModel;
  slots?: number;
  nCtx?: number;
  /** The next token after `tokens`; default: a fixed mix of the last token and the position, never a special one. */
  next?: (tokens: readonly number[]) => number;
  /**
   * Positions in the sequence (0-based, prompt included) whose token ends inside a UTF-8 character: llama-server
   * streams no chunk for it, and a non-streamed answer ending there fails (500).
   */
  holdBack?: ReadonlySet<number>;
  /** `--slot-save-path`: slot saves write here. */
  slotSavePath?: string;
  /** Answer /health with 503 "Loading model" this many times first. */
  loadingFor?: number;
  /** `/v1/completions` answers without token IDs, as a vLLM that ignores return_tokens_as_token_ids would. */
  omitTokenIds?: boolean;
  /** Stream tokens only as they are released (`release(n)`), so a test holds a request mid-answer. */
  gated?: boolean;
}

export interface CompletionLog {
  prompt: number[];
  n_predict: number;
  stream: boolean;
  id_slot: number;
  return_tokens: boolean;
}

const defaultNext = (tokens: readonly number[]) => 300 + ((tokens.at(-1)! * 31 + tokens.length * 7) % 200);

export class FakeLlamaServer {
  readonly completions: CompletionLog[] = [];
  /** The bodies of /v1/completions requests, as sent. */
  readonly openaiRequests: Record<string, unknown>[] = [];
  /** Per slot: decoding now, and the tokens its KV holds. */
  readonly slots: { processing: boolean; tokens: number[]; owner?: object }[];
  private readonly sockets = new Set<Socket>();
  private loadingLeft: number;
  private released = 0;
  private readonly gateWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly o: FakeOptions,
  ) {
    this.slots = Array.from({ length: o.slots ?? 2 }, () => ({ processing: false, tokens: [] }));
    this.loadingLeft = o.loadingFor ?? 0;
  }

  static async start(o: FakeOptions): Promise<FakeLlamaServer> {
    let fake!: FakeLlamaServer;
    const server = createServer((req, res) => void fake.handle(req, res));
    server.on("connection", (s) => {
      fake.sockets.add(s);
      s.on("close", () => fake.sockets.delete(s));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    fake = new FakeLlamaServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, o);
    return fake;
  }

  next(tokens: readonly number[]): number {
    return (this.o.next ?? defaultNext)(tokens);
  }

  /** The answer the fake gives to `prompt`: `n` tokens. */
  answer(prompt: readonly number[], n: number): number[] {
    const all = [...prompt];
    for (let i = 0; i < n; i++) all.push(this.next(all));
    return all.slice(prompt.length);
  }

  /** Lets `n` more tokens out (gated mode). */
  release(n: number): void {
    this.released += n;
    for (const w of this.gateWaiters.splice(0)) w();
  }

  /** Resolves when no slot is decoding. */
  idle(): Promise<void> {
    if (this.slots.every((s) => !s.processing)) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  busy(): number {
    return this.slots.filter((s) => s.processing).length;
  }

  /** Dies as a killed process does: every connection reset, the port closed. */
  async kill(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    for (const w of this.gateWaiters.splice(0)) w();
  }

  close(): Promise<void> {
    return this.kill();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const body = req.method === "POST" ? await readJson(req) : undefined;
    const json = (status: number, value: unknown): void =>
      void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
    const { model } = this.o;
    if (url.pathname === "/health") {
      if (this.loadingLeft-- > 0)
        return json(503, { error: { code: 503, message: "Loading model", type: "unavailable_error" } });
      return json(200, { status: "ok" });
    }
    if (url.pathname === "/props")
      return json(200, {
        total_slots: this.slots.length,
        default_generation_settings: { n_ctx: this.o.nCtx ?? 2048, params: {} },
        model_path: model.modelPath,
        endpoint_slots: true,
        endpoint_metrics: true,
      });
    if (url.pathname === "/v1/models")
      return json(200, {
        object: "list",
        data: [
          {
            id: "fake",
            meta: {
              n_vocab: model.nVocab,
              n_ctx_train: model.nCtxTrain,
              n_embd: model.nEmbd,
              n_params: model.nParams,
            },
          },
        ],
      });
    if (url.pathname === "/slots" && req.method === "GET")
      return json(
        200,
        this.slots.map((s, id) => ({ id, is_processing: s.processing })),
      );
    if (url.pathname === "/tokenize") return json(200, { tokens: model.tokenize(String(body?.content ?? "")) });
    if (url.pathname === "/completion") return this.completion(body!, res, "native");
    if (url.pathname === "/v1/completions") return this.openaiCompletion(body!, res);
    const save = /^\/slots\/(\d+)$/.exec(url.pathname);
    if (save && url.searchParams.get("action") === "save") return this.save(Number(save[1]), body!, res);
    return json(404, { error: { code: 404, message: "File Not Found", type: "not_found_error" } });
  }

  /** As vLLM: max_tokens (null: no limit), no slot choice, every token streamed (no hold-back). */
  private openaiCompletion(body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    this.openaiRequests.push(body);
    const native = { prompt: body.prompt, n_predict: body.max_tokens ?? -1, stream: body.stream === true, id_slot: -1 };
    return this.completion(native, res, "vllm");
  }

  /** One vLLM choice carrying `tokens`: logprobs.tokens "token_id:N", or no logprobs when told to omit them. */
  private vllmChoice(tokens: number[], finish: string | null): Record<string, unknown> {
    const ids = tokens.map((t) => `token_id:${t}`);
    const logprobs = this.o.omitTokenIds
      ? null
      : {
          tokens: ids,
          token_logprobs: ids.map(() => 0),
          top_logprobs: ids.map((id) => ({ [id]: 0 })),
          text_offset: [],
        };
    return { index: 0, text: tokens.length ? "x" : "", logprobs, finish_reason: finish, stop_reason: null };
  }

  private chunk(format: "native" | "vllm", t: number, out: number[], id: number, last: boolean): string {
    if (format === "native")
      return JSON.stringify({ tokens: [t], tokens_predicted: out.length, id_slot: id, stop: false });
    return JSON.stringify({
      id: "cmpl-fake",
      object: "text_completion",
      choices: [this.vllmChoice([t], last ? "length" : null)],
    });
  }

  private finalVllm(stream: boolean, out: number[]): string {
    const usage = { prompt_tokens: 0, completion_tokens: out.length, total_tokens: out.length };
    if (stream) return `data: ${JSON.stringify({ id: "cmpl-fake", choices: [], usage })}\n\ndata: [DONE]\n\n`;
    return JSON.stringify({ id: "cmpl-fake", choices: [this.vllmChoice(out, "length")], usage });
  }

  private async completion(
    body: Record<string, unknown>,
    res: ServerResponse,
    format: "native" | "vllm",
  ): Promise<void> {
    const log = body as unknown as CompletionLog;
    this.completions.push(log);
    const requested = Number(log.id_slot ?? -1);
    const id = requested >= 0 ? requested : this.slots.findIndex((s) => !s.processing);
    const slot = this.slots[id]!;
    const owner = {};
    slot.processing = true;
    slot.owner = owner;
    const tokens = [...log.prompt];
    const limit = log.n_predict < 0 ? Number.POSITIVE_INFINITY : log.n_predict;
    let closed = false;
    res.on("close", () => {
      closed = true;
      for (const w of this.gateWaiters.splice(0)) w();
    });
    // As llama-server: the headers go out before the first token, so a death before it cuts a body already begun.
    if (log.stream) res.writeHead(200, { "content-type": "text/event-stream" }).flushHeaders();
    const out: number[] = [];
    while (out.length < limit && !closed) {
      if (this.o.gated) await this.gate(() => closed);
      if (closed) break;
      const t = this.next(tokens);
      tokens.push(t);
      out.push(t);
      if (slot.owner === owner) slot.tokens = tokens.slice(0, -1);
      if (log.stream && (format === "vllm" || !this.o.holdBack?.has(tokens.length - 1)))
        res.write(`data: ${this.chunk(format, t, out, id, out.length === limit)}\n\n`);
      await new Promise((r) => setImmediate(r));
    }
    const final = { tokens: log.stream ? [] : out, tokens_predicted: out.length, id_slot: id, stop: true };
    // Like llama-server, which parses the final text: a non-streamed answer that ends inside a character fails.
    if (!closed && format === "vllm") {
      if (log.stream) res.end(this.finalVllm(true, out));
      else res.writeHead(200, { "content-type": "application/json" }).end(this.finalVllm(false, out));
    } else if (!closed && !log.stream && this.o.holdBack?.has(tokens.length - 1))
      json500(res, "The model produced output that does not match the expected Content-only format");
    else if (!closed) {
      if (log.stream) res.end(`data: ${JSON.stringify({ ...final, stop_type: "limit" })}\n\n`);
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(final));
    }
    if (slot.owner === owner) slot.processing = false;
    if (this.busy() === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async gate(closed: () => boolean): Promise<void> {
    while (this.released <= 0 && !closed()) await new Promise<void>((r) => this.gateWaiters.push(r));
    this.released--;
  }

  /** Writes a slot image as llama-server does: the packed token record, then (fake) state bytes. */
  private save(id: number, body: Record<string, unknown>, res: ServerResponse): void {
    const tokens = this.slots[id]!.tokens;
    const plain = Buffer.alloc(12 + 4 * tokens.length + 16);
    plain.writeUInt32LE(0x67677371, 0);
    plain.writeUInt32LE(3, 4);
    plain.writeUInt32LE(tokens.length, 8);
    for (const [i, t] of tokens.entries()) plain.writeInt32LE(t, 12 + 4 * i);
    plain.fill(0xab, 12 + 4 * tokens.length);
    writeFileSync(join(this.o.slotSavePath!, String(body.filename)), toServerImage(new Uint8Array(plain)));
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ id_slot: id, filename: body.filename, n_saved: tokens.length }));
  }
}

function json500(res: ServerResponse, message: string): void {
  res
    .writeHead(500, { "content-type": "application/json" })
    .end(JSON.stringify({ error: { code: 500, message, type: "server_error" } }));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  for await (const p of req) parts.push(p as Buffer);
  return JSON.parse(Buffer.concat(parts).toString("utf8") || "{}") as Record<string, unknown>;
}
