/**
 * One completion, chat or text, streamed or not: the prompt (templated,
 * checked against the context before and after tokenizing), admission to a
 * sequence, the device's answer with stop strings and cancellation, and the
 * response in OpenAI's shapes. Non-streamed answers are not paced (nobody
 * watches them arrive); streamed ones are shown at `streamTpotMs`. @internal
 */
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { PdDevice } from "./device.js";
import type { Admission } from "./openai-admission.js";
import { ApiError, sendJson } from "./openai-errors.js";
import { chatLogprobs, completionLogprobs } from "./openai-logprobs.js";
import { observeReport, type ServeMetrics } from "./openai-metrics.js";
import type { GenerationRequest } from "./openai-schema.js";
import { StopMatcher } from "./openai-stop.js";
import type { ChatTemplate } from "./openai-template.js";
import { templatedPrompt, type Prompt } from "./prompt.js";
import type { Report } from "./run.js";

/** A prompt longer than this many bytes per context position is refused before tokenizing (tokenizing is synchronous). */
export const PROMPT_BYTES_PER_TOKEN = 16;

export interface GenerateContext {
  device: PdDevice;
  modelId: string;
  template: ChatTemplate;
  admission: Admission;
  metrics: ServeMetrics;
  /** Pace of streamed answers, ms per token (0: as fast as produced). */
  streamTpotMs: number;
}

/** What a request's log line says about its generation. */
export interface GenerationLog {
  promptTokens?: number;
  completionTokens?: number;
  cloudTokens?: number;
  deviceTokens?: number;
  mode?: string;
  ttftMs?: number;
  finish?: string;
  outcome?: "done" | "cancelled" | "error";
  fallbackReason?: string;
}

interface Prepared {
  prompt: Prompt;
  promptTokens: number;
  maxTokens: number;
}

/**
 * The prompt and its token count, refused with the OpenAI error when it does
 * not fit the context. A chat rendered by the model's template is tokenized
 * with its control tokens, as llama-server's; the fallback's "role: content"
 * lines and a completion's prompt are texts (prompt.ts).
 */
export function prepare(ctx: GenerateContext, r: GenerationRequest): Prepared {
  const text = r.kind === "chat" ? ctx.template.render(r.messages) : r.prompt;
  const param = r.kind === "chat" ? "messages" : "prompt";
  const n = ctx.device.engine.contextSize;
  const bytes = Buffer.byteLength(text);
  if (bytes > PROMPT_BYTES_PER_TOKEN * n)
    throw ApiError.contextExceeded(
      param,
      `This model's maximum context length is ${n} tokens. However, your ${param} are ${bytes} bytes, over ${PROMPT_BYTES_PER_TOKEN} bytes per token of the context; they were not tokenized.`,
    );
  if (r.logprobs !== undefined && !ctx.device.engine.givesLogprobs)
    throw ApiError.unsupported("logprobs", "log-probabilities (this engine gives none)");
  const templated = r.kind === "chat" && ctx.template.source !== "fallback";
  const prompt = templated ? templatedPrompt(ctx.device.engine, text) : text;
  const promptTokens = typeof prompt === "string" ? ctx.device.engine.tokenize(prompt).length : prompt.tokens.length;
  if (promptTokens >= n)
    throw ApiError.contextExceeded(
      param,
      `This model's maximum context length is ${n} tokens. However, your ${param} resulted in ${promptTokens} tokens. Please reduce the length of the ${param}.`,
    );
  // Generation stops at the context, with finish_reason "length", as llama-server's does.
  return { prompt, promptTokens, maxTokens: Math.min(r.maxTokens ?? Number.POSITIVE_INFINITY, n - promptTokens) };
}

/** The parts of the report shown to clients as `pdd`: no token IDs, no text, no log-probabilities. */
export function pddExtension(rep: Report) {
  const { cloudTokenIds: _c, deviceTokenIds: _d, text: _t, logprobs: _l, ...rest } = rep;
  return rest;
}

/** The choice's `logprobs`: null unless asked for. */
function logprobsOf(ctx: GenerateContext, r: GenerationRequest, rep: Report, text: string) {
  if (r.logprobs === undefined) return null;
  const engine = ctx.device.engine;
  return r.kind === "chat" ? chatLogprobs(engine, rep, text) : completionLogprobs(engine, rep, text);
}

/** Runs one admitted or refused request to its end; resolves with what its log line says. */
export async function complete(
  ctx: GenerateContext,
  r: GenerationRequest,
  res: ServerResponse,
  clientGone: AbortSignal,
): Promise<GenerationLog> {
  const p = prepare(ctx, r);
  const release = await ctx.admission.enter(clientGone);
  try {
    return await answer(ctx, r, p, res, clientGone);
  } finally {
    release();
  }
}

async function answer(
  ctx: GenerateContext,
  r: GenerationRequest,
  p: Prepared,
  res: ServerResponse,
  clientGone: AbortSignal,
): Promise<GenerationLog> {
  const out = r.stream ? new SseWriter(ctx, r, res) : undefined;
  const stopped = new AbortController();
  const stops = new StopMatcher(r.stop, (text) => out?.delta(text));
  let rep: Report;
  try {
    rep = await ctx.device.generate(p.prompt, {
      maxTokens: p.maxTokens,
      sampling: r.sampling,
      targetTpotMs: r.stream ? ctx.streamTpotMs : 0,
      logprobs: r.logprobs,
      signal: AbortSignal.any([clientGone, stopped.signal]),
      onText: (text) => {
        if (stops.push(text)) stopped.abort(new Error("stop string"));
      },
    });
  } catch (e) {
    ctx.metrics.outcomes.inc({ outcome: "error" });
    if (!out) throw e;
    out.fail(ApiError.from(e));
    return { promptTokens: p.promptTokens, outcome: "error" };
  }
  stops.end();
  const produced = rep.cloudTokens + rep.deviceTokens;
  const finish = stops.matched === undefined && produced >= p.maxTokens ? "length" : "stop";
  const outcome = clientGone.aborted ? "cancelled" : "done";
  ctx.metrics.outcomes.inc({ outcome: outcome === "cancelled" ? outcome : finish });
  observeReport(ctx.metrics, rep, p.promptTokens);
  const usage = { prompt_tokens: p.promptTokens, completion_tokens: produced, total_tokens: p.promptTokens + produced };
  if (outcome === "done") {
    const logprobs = logprobsOf(ctx, r, rep, stops.text);
    if (out) out.finish(finish, usage, pddExtension(rep), logprobs);
    else sendJson(res, 200, completionBody(ctx, r, { text: stops.text, finish, logprobs }, usage, pddExtension(rep)));
  }
  const { cloudTokens, deviceTokens, mode, ttftMs, fallbackReason } = rep;
  return {
    promptTokens: p.promptTokens,
    completionTokens: produced,
    cloudTokens,
    deviceTokens,
    mode,
    ttftMs: Math.round(ttftMs),
    finish,
    outcome,
    fallbackReason,
  };
}

type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

function completionBody(
  ctx: GenerateContext,
  r: GenerationRequest,
  answer: { text: string; finish: string; logprobs: unknown },
  usage: Usage,
  pdd: unknown,
) {
  const chat = r.kind === "chat";
  const { text, finish, logprobs } = answer;
  const choice = chat
    ? { index: 0, message: { role: "assistant", content: text, refusal: null }, finish_reason: finish, logprobs }
    : { index: 0, text, finish_reason: finish, logprobs };
  return {
    id: `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`,
    object: chat ? "chat.completion" : "text_completion",
    created: Math.floor(Date.now() / 1000),
    model: ctx.modelId,
    choices: [choice],
    usage,
    pdd,
  };
}

/** A streamed answer: server-sent events in OpenAI's chunk shapes. */
class SseWriter {
  private readonly base: { id: string; object: string; created: number; model: string };
  private first = true;

  constructor(
    ctx: GenerateContext,
    private readonly r: GenerationRequest,
    private readonly res: ServerResponse,
  ) {
    const chat = r.kind === "chat";
    this.base = {
      id: `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`,
      object: chat ? "chat.completion.chunk" : "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: ctx.modelId,
    };
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    res.flushHeaders();
  }

  private event(data: unknown): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  private choice(text: string | undefined, finish: string | null, logprobs: unknown = null) {
    if (this.r.kind === "completion") return { index: 0, text: text ?? "", finish_reason: finish, logprobs };
    const delta = text === undefined ? {} : this.first ? { role: "assistant", content: text } : { content: text };
    this.first = false;
    return { index: 0, delta, finish_reason: finish, logprobs };
  }

  private usageField() {
    return this.r.includeUsage ? { usage: null } : {};
  }

  delta(text: string): void {
    this.event({ ...this.base, choices: [this.choice(text, null)], ...this.usageField() });
  }

  /** The last chunk; it carries the whole answer's log-probabilities when they were asked for. */
  finish(finish: string, usage: Usage, pdd: unknown, logprobs: unknown): void {
    this.event({ ...this.base, choices: [this.choice(undefined, finish, logprobs)], ...this.usageField(), pdd });
    if (this.r.includeUsage) this.event({ ...this.base, choices: [], usage });
    this.res.end("data: [DONE]\n\n");
  }

  /** An error after the 200 went out: OpenAI's SDKs raise an error event as an APIError. */
  fail(e: ApiError): void {
    this.event(e.body);
    this.res.end();
  }
}
