/**
 * Generation over the OpenAI-compatible `POST /v1/completions` (`--backend-api
 * openai`), the API vLLM serves: a token-ID prompt, and the generated token
 * IDs read back per streamed choice. One request serves both servers it was
 * written for, so it asks for both forms:
 * - vLLM: `return_tokens_as_token_ids: true` with `logprobs: 1` gives
 *   `logprobs.tokens` entries "token_id:123" (from vLLM's documentation; vLLM
 *   itself was not run here);
 * - llama-server: `logprobs.content[].id` (checked against the v0.4.0 build),
 *   and, with `timings_per_token`, `timings.predicted_n` per chunk, which
 *   tells where it held back a token ending inside a UTF-8 character.
 * llama-server ignores vLLM's fields (checked); vLLM is expected to ignore
 * llama-server's (its request models log and drop unknown fields, as read,
 * not run).
 * Only generation moves: tokenize, props, health, slots and slot save stay on
 * llama-server's native endpoints, so this mode still needs a llama-server
 * (or a server answering those endpoints as it does).
 * @internal
 */
import { ErrorCode, PddError } from "../proto/index.js";
import type { CompletionChunk, CompletionParams } from "./llama-server-client.js";

export const BACKEND_APIS = ["native", "openai"] as const;
/** Which generation API the backend speaks: llama-server's `/completion`, or OpenAI's `/v1/completions`. */
export type BackendApi = (typeof BACKEND_APIS)[number];

/** The wire body of /v1/completions. `max_tokens: null`: until EOS or the context's end (vLLM's default is 16). */
export function openaiCompletionBody(p: CompletionParams, stream: boolean): Record<string, unknown> {
  return {
    prompt: p.prompt,
    max_tokens: p.nPredict < 0 ? null : p.nPredict,
    temperature: p.temperature ?? 0,
    stream,
    logprobs: 1,
    return_tokens_as_token_ids: true,
    ...(stream ? { stream_options: { include_usage: true }, timings_per_token: true } : {}),
    cache_prompt: true,
    id_slot: p.idSlot ?? -1,
    ...(p.topK ? { top_k: p.topK } : {}),
    ...(p.topP ? { top_p: p.topP } : {}),
    ...(p.seed !== undefined && Number.isFinite(p.seed) ? { seed: p.seed } : {}),
  };
}

const VLLM_TOKEN_ID = /^token_id:(\d+)$/;

/** The token IDs one choice carries, in either server's form; undefined when it carries none. */
export function choiceTokenIds(choice: Record<string, unknown>): number[] | undefined {
  const lp = choice.logprobs as { content?: unknown; tokens?: unknown } | null | undefined;
  if (!lp || typeof lp !== "object") return undefined;
  if (Array.isArray(lp.content)) {
    const ids = lp.content.map((c: { id?: unknown }) => c?.id);
    if (ids.every((id) => Number.isInteger(id))) return ids as number[];
  }
  if (Array.isArray(lp.tokens)) {
    const ids = lp.tokens.map((t) => VLLM_TOKEN_ID.exec(String(t))?.[1]);
    if (ids.every((id) => id !== undefined)) return ids.map(Number);
  }
  return undefined;
}

export function noTokenIds(url: string, what: string): PddError {
  return new PddError(
    ErrorCode.INTERNAL,
    `the backend ${url} returned no token IDs (${what}): for vLLM, it must honour return_tokens_as_token_ids ` +
      "with logprobs (both sent); for llama-server, its OpenAI logprobs must carry `id` (v0.4.0's do), or use " +
      "--backend-api native",
  );
}

/**
 * One streamed /v1/completions event as the chunk the slot reads; undefined for one that carries no choice (vLLM's
 * usage-only last event). `received`: tokens streamed so far in this request, for a server that sends no count.
 */
export function openaiChunk(json: Record<string, unknown>, received: number, url: string): CompletionChunk | undefined {
  const choice = (json.choices as Record<string, unknown>[] | undefined)?.[0];
  if (!choice) return undefined;
  const finish = typeof choice.finish_reason === "string" ? choice.finish_reason : undefined;
  let tokens = choiceTokenIds(choice);
  // A last event may carry no token (llama-server's: empty text, logprobs null); any other event must.
  if (!tokens && finish && !choice.text) tokens = [];
  if (!tokens) throw noTokenIds(url, `a streamed choice: ${JSON.stringify(choice).slice(0, 120)}`);
  const predicted = (json.timings as { predicted_n?: unknown } | undefined)?.predicted_n;
  return {
    tokens,
    tokensPredicted: typeof predicted === "number" ? predicted : received + tokens.length,
    idSlot: Number(json.id_slot ?? -1),
    stop: finish !== undefined,
    stopType: finish === undefined ? undefined : finish === "length" ? "limit" : "eos",
  };
}

/**
 * A non-streamed /v1/completions answer's tokens. llama-server's OpenAI logprobs leave out a token ending inside a
 * UTF-8 character, so fewer IDs than `usage.completion_tokens` is an answer this mode cannot recover.
 */
export function openaiTokens(json: Record<string, unknown>, url: string): number[] {
  const choice = (json.choices as Record<string, unknown>[] | undefined)?.[0];
  const tokens = choice ? choiceTokenIds(choice) : undefined;
  if (!tokens) throw noTokenIds(url, "a non-streamed answer");
  const generated = (json.usage as { completion_tokens?: unknown } | undefined)?.completion_tokens;
  if (typeof generated === "number" && generated !== tokens.length)
    throw new PddError(
      ErrorCode.INTERNAL,
      `the backend ${url} generated ${generated} tokens but gave the IDs of ${tokens.length} (llama-server's ` +
        "OpenAI endpoint leaves out tokens that end inside a UTF-8 character): use --backend-api native",
    );
  return tokens;
}
