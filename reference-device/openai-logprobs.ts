/**
 * OpenAI's `logprobs` objects from a report's tokens and their
 * log-probabilities (Report.logprobs): the tokens of the text the client got
 * (a stop string cuts it; a token that starts before the cut is in), chat's
 * `{content: [{token, logprob, bytes, top_logprobs}]}` or completions'
 * `{tokens, token_logprobs, top_logprobs, text_offset}`. A cloud token the
 * device could not score (another tokenizer) has logprob null. @internal
 */
import type { InferenceEngine, TokenLogprob } from "../engine/index.js";
import type { Report } from "./report.js";

interface Scored {
  token: string;
  bytes: number[];
  /** Byte offset of the token in the text. */
  offset: number;
  lp: TokenLogprob | null;
}

/** The shown tokens that make up `text`, with their log-probabilities. */
function scoredTokens(engine: InferenceEngine, rep: Report, text: string): Scored[] {
  const ids = [...rep.cloudTokenIds, ...rep.deviceTokenIds];
  const end = Buffer.byteLength(text);
  const out: Scored[] = [];
  let offset = 0;
  for (const [i, id] of ids.entries()) {
    if (offset >= end) break;
    const piece = engine.pieces[id] ?? new Uint8Array();
    out.push({ token: Buffer.from(piece).toString("utf8"), bytes: [...piece], offset, lp: rep.logprobs?.[i] ?? null });
    offset += piece.length;
  }
  return out;
}

const pieceOf = (engine: InferenceEngine, id: number) => engine.pieces[id] ?? new Uint8Array();

export function chatLogprobs(engine: InferenceEngine, rep: Report, text: string) {
  const alt = (id: number, logprob: number) => {
    const piece = pieceOf(engine, id);
    return { token: Buffer.from(piece).toString("utf8"), logprob, bytes: [...piece] };
  };
  return {
    content: scoredTokens(engine, rep, text).map((t) => ({
      token: t.token,
      logprob: t.lp?.logprob ?? null,
      bytes: t.bytes,
      top_logprobs: t.lp?.top.map((a) => alt(a.id, a.logprob)) ?? [],
    })),
    refusal: null,
  };
}

export function completionLogprobs(engine: InferenceEngine, rep: Report, text: string) {
  const scored = scoredTokens(engine, rep, text);
  const text16 = (id: number) => Buffer.from(pieceOf(engine, id)).toString("utf8");
  return {
    tokens: scored.map((t) => t.token),
    token_logprobs: scored.map((t) => t.lp?.logprob ?? null),
    top_logprobs: scored.map((t) => (t.lp ? Object.fromEntries(t.lp.top.map((a) => [text16(a.id), a.logprob])) : null)),
    text_offset: scored.map((t) => Buffer.from(text).subarray(0, t.offset).toString("utf8").length),
  };
}
