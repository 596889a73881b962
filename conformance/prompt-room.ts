/**
 * Prompts sized to the limits the cloud announced (HelloAck): a case never
 * sends a prompt the cloud must refuse as PROMPT_TOO_LONG, and reports "not
 * offered" with the reason when even the prompt it needs does not fit.
 *
 * The suite does not know the cloud's tokenizer, so it counts the worst
 * case: an ASCII text of B bytes is at most B + 2 prompt tokens (one per
 * byte, a space prefix, a BOS; Appendix C).
 */
import { field, NotOffered, type Probe } from "./probe.js";

const SENTENCE = "The quick brown fox jumps over the lazy dog. ";

/** Prompt tokens the cloud takes with `budget` answer tokens: max_prompt_tokens and the context, whichever is less. */
export function promptRoom(p: Probe, budget: number): number {
  const ack = p.ack;
  if (!ack) return Number.POSITIVE_INFINITY;
  const maxPrompt = field<number | undefined>(ack, "helloAck.limits.maxPromptTokens") || Number.POSITIVE_INFINITY;
  const context = field<number | undefined>(ack, "helloAck.cloudModel.contextLength") || Number.POSITIVE_INFINITY;
  return Math.min(maxPrompt, context - budget);
}

/**
 * The pangram repeated up to `repeats` times, as many as fit; `minRepeats`
 * is what the case needs to mean anything (else it is not offered).
 */
export function fittedPrompt(p: Probe, o: { repeats: number; minRepeats?: number; budget: number }): string {
  const room = promptRoom(p, o.budget);
  const fit = Math.floor((room - 2) / SENTENCE.length);
  const repeats = Math.min(o.repeats, fit);
  if (repeats < (o.minRepeats ?? 1))
    throw new NotOffered(
      `the cloud's limits (max_prompt_tokens, context_length) leave room for ${room} prompt tokens with a budget of ${o.budget}: too few for this case`,
    );
  return SENTENCE.repeat(repeats);
}
