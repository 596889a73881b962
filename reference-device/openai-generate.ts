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
import { observeReport, type ServeMetrics } from "./openai-metrics.js";
import type { GenerationRequest } from "./openai-schema.js";
import { StopMatcher } from "./openai-stop.js";
import type { ChatTemplate } from "./openai-template.js";
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
  prompt: string;
  promptTokens: number;
  maxTokens: number;
}

/** The prompt text and its token count, refused with the OpenAI error when it does not fit the context. */
export function prepare(ctx: GenerateContext, r: GenerationRequest): Prepared {
  const prompt = r.kind === "chat" ? ctx.template.render(r.messages) : r.prompt;
  const param = r.kind === "chat" ? "messages" : "prompt";
  const n = ctx.device.engine.contextSize;
  const bytes = Buffer.byteLength(prompt);
  if (bytes > PROMPT_BYTES_PER_TOKEN * n)
    throw ApiError.contextExceeded(
      param,
      `This model's maximum context length is ${n} tokens. However, your ${param} are ${bytes} bytes, over ${PROMPT_BYTES_PER_TOKEN} bytes per token of the context; they were not tokenized.`,
    );
  const promptTokens = ctx.device.engine.tokenize(prompt).length;
  if (promptTokens >= n)
    throw ApiError.contextExceeded(
      param,
      `This model's maximum context length is ${n} tokens. However, your ${param} resulted in ${promptTokens} tokens. Please reduce the length of the ${param}.`,
    );
  // Generation stops at the context, with finish_reason "length", as llama-server's does.
  return { prompt, promptTokens, maxTokens: Math.min(r.maxTokens ?? Number.POSITIVE_INFINITY, n - promptTokens) };
}

/** The parts of the report shown to clients as `pdd`: no token IDs, no text. */
export function pddExtension(rep: Report) {
  const { cloudTokenIds: _c, deviceTokenIds: _d, text: _t, ...rest } = rep;
  return rest;
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
    if (out) out.finish(finish, usage, pddExtension(rep));
    else sendJson(res, 200, completionBody(ctx, r, stops.text, finish, usage, pddExtension(rep)));
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
  text: string,
  finish: string,
  usage: Usage,
  pdd: unknown,
) {
  const chat = r.kind === "chat";
  const choice = chat
    ? { index: 0, message: { role: "assistant", content: text, refusal: null }, finish_reason: finish, logprobs: null }
    : { index: 0, text, finish_reason: finish, logprobs: null };
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

  private choice(text: string | undefined, finish: string | null) {
    if (this.r.kind === "completion") return { index: 0, text: text ?? "", finish_reason: finish, logprobs: null };
    const delta = text === undefined ? {} : this.first ? { role: "assistant", content: text } : { content: text };
    this.first = false;
    return { index: 0, delta, finish_reason: finish, logprobs: null };
  }

  private usageField() {
    return this.r.includeUsage ? { usage: null } : {};
  }

  delta(text: string): void {
    this.event({ ...this.base, choices: [this.choice(text, null)], ...this.usageField() });
  }

  finish(finish: string, usage: Usage, pdd: unknown): void {
    this.event({ ...this.base, choices: [this.choice(undefined, finish)], ...this.usageField(), pdd });
    if (this.r.includeUsage) this.event({ ...this.base, choices: [], usage });
    this.res.end("data: [DONE]\n\n");
  }

  /** An error after the 200 went out: OpenAI's SDKs raise an error event as an APIError. */
  fail(e: ApiError): void {
    this.event(e.body);
    this.res.end();
  }
}
