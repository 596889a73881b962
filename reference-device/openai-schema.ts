/**
 * The request bodies of /v1/chat/completions and /v1/completions, checked
 * into one `GenerationRequest`. Every OpenAI parameter is either honoured or
 * refused with a 400 naming it (as llama-server refuses `n > 1`); a value
 * that changes nothing (n = 1, echo = false, penalties 0) is accepted. An
 * unknown parameter is refused as OpenAI refuses it. @internal
 */
import { z } from "zod";
import type { Sampling } from "../engine/index.js";
import { ApiError } from "./openai-errors.js";

/** One message of a chat, its content as text (image and audio parts are refused). */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface GenerationRequest {
  kind: "chat" | "completion";
  model: string | undefined;
  messages: ChatMessage[];
  prompt: string;
  /** Absent: until the end of generation or the context. */
  maxTokens: number | undefined;
  sampling: Sampling | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** Log-probabilities asked for, with this many alternatives per token (chat `top_logprobs`, completions `logprobs`). */
  logprobs?: number;
}

const tokens = z
  .number()
  .int()
  .min(1)
  .max(1 << 20);
const stop = z.union([z.string(), z.array(z.string()).max(16)]).nullable();
const part = z.object({ type: z.string(), text: z.string().optional() }).passthrough();
const message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
    content: z
      .union([z.string(), z.array(part)])
      .nullable()
      .optional(),
    name: z.string().optional(),
    tool_calls: z.array(z.unknown()).optional(),
  })
  .strict();

/** What both endpoints take. Parameters the device cannot honour are typed loosely here and judged in `refuseUnsupported`. */
const common = {
  model: z.string().optional(),
  max_tokens: tokens.nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  top_k: z.number().int().min(0).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  stop: stop.optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).passthrough().nullable().optional(),
  user: z.string().optional(),
  n: z.number().int().nullable().optional(),
  frequency_penalty: z.number().nullable().optional(),
  presence_penalty: z.number().nullable().optional(),
  logit_bias: z.record(z.string(), z.number()).nullable().optional(),
};

const ChatBody = z
  .object({
    ...common,
    messages: z.array(message).min(1),
    max_completion_tokens: tokens.nullable().optional(),
    logprobs: z.boolean().nullable().optional(),
    top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
    tools: z.array(z.unknown()).nullable().optional(),
    tool_choice: z.unknown().optional(),
    parallel_tool_calls: z.boolean().nullable().optional(),
    functions: z.array(z.unknown()).nullable().optional(),
    function_call: z.unknown().optional(),
    response_format: z.object({ type: z.string() }).passthrough().nullable().optional(),
  })
  .strict();

const CompletionBody = z
  .object({
    ...common,
    prompt: z.union([z.string(), z.array(z.unknown())]),
    logprobs: z.number().int().min(0).max(5).nullable().optional(),
    echo: z.boolean().nullable().optional(),
    best_of: z.number().int().nullable().optional(),
    suffix: z.string().nullable().optional(),
  })
  .strict();

type Chat = z.infer<typeof ChatBody>;
type Completion = z.infer<typeof CompletionBody>;

/** The first problem zod found, as OpenAI words it: an unknown parameter, or a bad value naming its path. */
function parseError(issues: z.core.$ZodIssue[]): ApiError {
  const i = issues[0]!;
  if (i.code === "unrecognized_keys") {
    const key = [...i.path, i.keys[0]].join(".");
    return new ApiError(400, `Unrecognized request argument supplied: ${key}`, undefined, key, "unknown_parameter");
  }
  return ApiError.invalid(i.path.join(".") || null, i.message);
}

/** The parameters either body may carry that the device cannot honour beyond their defaults. */
interface Refusable {
  n?: number | null;
  best_of?: number | null;
  echo?: boolean | null;
  suffix?: string | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  tools?: unknown[] | null;
  tool_choice?: unknown;
  functions?: unknown[] | null;
  function_call?: unknown;
  response_format?: { type: string } | null;
}

/** Parameters whose non-default values the device cannot honour. */
function refuseUnsupported(b: Refusable): void {
  const refuse = (param: string, bad: boolean, what: string) => {
    if (bad) throw ApiError.unsupported(param, what);
  };
  refuse("n", b.n != null && b.n !== 1, "more than one choice (n > 1)");
  refuse("best_of", b.best_of != null && b.best_of !== 1, "best_of > 1");
  refuse("echo", b.echo === true, "echoing the prompt");
  refuse("suffix", b.suffix != null && b.suffix !== "", "a suffix (insertion)");
  refuse("frequency_penalty", !!b.frequency_penalty, "a frequency penalty (the protocol's sampling has none)");
  refuse("presence_penalty", !!b.presence_penalty, "a presence penalty (the protocol's sampling has none)");
  refuse("logit_bias", b.logit_bias != null && Object.keys(b.logit_bias).length > 0, "logit_bias");
  refuse("tools", (b.tools?.length ?? 0) > 0 || b.tool_choice != null, "tool calling");
  refuse("functions", (b.functions?.length ?? 0) > 0 || b.function_call != null, "function calling");
  refuse(
    "response_format",
    b.response_format != null && b.response_format.type !== "text",
    "a response format other than text",
  );
}

function stopStrings(s: string | string[] | null | undefined): string[] {
  const list = s == null ? [] : typeof s === "string" ? [s] : s;
  if (list.some((x) => x.length === 0)) throw ApiError.invalid("stop", "a stop string must not be empty");
  return list;
}

function sampling(b: Chat | Completion): Sampling | undefined {
  if (!b.temperature) return undefined; // temperature 0 (or absent): greedy, as llama-server without sampling
  return {
    temperature: b.temperature,
    topP: b.top_p ?? undefined,
    topK: b.top_k ?? undefined,
    seed: b.seed ?? undefined,
  };
}

function messageText(m: z.infer<typeof message>, i: number): ChatMessage {
  if (m.role === "tool" || m.role === "function" || m.tool_calls)
    throw ApiError.unsupported(`messages[${i}].role`, "tool and function messages");
  const parts = typeof m.content === "string" ? [{ type: "text", text: m.content }] : (m.content ?? []);
  const text = parts
    .map((p, j) => {
      if (p.type !== "text" || p.text === undefined)
        throw ApiError.unsupported(`messages[${i}].content[${j}].type`, `a "${p.type.slice(0, 40)}" content part`);
      return p.text;
    })
    .join("");
  return { role: m.role === "developer" ? "system" : m.role, content: text };
}

export function parseChat(body: unknown): GenerationRequest {
  const parsed = ChatBody.safeParse(body);
  if (!parsed.success) throw parseError(parsed.error.issues);
  const b = parsed.data;
  refuseUnsupported(b);
  // As OpenAI: top_logprobs needs logprobs.
  if (b.top_logprobs && b.logprobs !== true)
    throw ApiError.invalid("top_logprobs", "top_logprobs requires logprobs to be true");
  return {
    kind: "chat",
    model: b.model,
    messages: b.messages.map(messageText),
    prompt: "",
    maxTokens: b.max_completion_tokens ?? b.max_tokens ?? undefined,
    sampling: sampling(b),
    stop: stopStrings(b.stop),
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    ...(b.logprobs === true ? { logprobs: b.top_logprobs ?? 0 } : {}),
  };
}

export function parseCompletion(body: unknown): GenerationRequest {
  const parsed = CompletionBody.safeParse(body);
  if (!parsed.success) throw parseError(parsed.error.issues);
  const b = parsed.data;
  refuseUnsupported(b);
  const p = b.prompt;
  if (Array.isArray(p) && (p.length !== 1 || typeof p[0] !== "string"))
    throw ApiError.unsupported("prompt", "a prompt other than one string (several prompts, or token IDs)");
  return {
    kind: "completion",
    model: b.model,
    messages: [],
    prompt: typeof p === "string" ? p : (p[0] as string),
    maxTokens: b.max_tokens ?? undefined,
    sampling: sampling(b),
    stop: stopStrings(b.stop),
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    ...(b.logprobs != null ? { logprobs: b.logprobs } : {}),
  };
}
