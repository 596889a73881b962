/**
 * What a device run answers: a text prompt, or a chat its model's template
 * rendered.
 *
 * - A text is tokenized as PDD-TOK-001 says, on both sides: control tokens
 *   spelled in it stay characters, so a user cannot inject them.
 * - A templated chat is tokenized once, here, as llama-server tokenizes its
 *   chats (InferenceEngine.tokenizeTemplated: `<|im_start|>` becomes its
 *   control token). The device prefills those IDs, and sends them as a
 *   token-ID prompt when the cloud accepts them (PDD-REQ-002: it announced
 *   `token_ids` and its tokenizer fingerprint equals the device's). A cloud
 *   with another tokenizer gets the rendered text, which it tokenizes as a
 *   text (PDD-REQ-001): the template's markers are characters to its model.
 * @internal
 */
import type { InferenceEngine } from "../engine/index.js";

export interface TemplatedPrompt {
  /** The template's rendering, for a cloud that cannot take `tokens`. */
  readonly text: string;
  /** Its tokens with the control tokens parsed, BOS included when the model adds one. */
  readonly tokens: readonly number[];
}

export type Prompt = string | TemplatedPrompt;

/** A chat rendered by the model's template, tokenized with its control tokens. */
export function templatedPrompt(engine: InferenceEngine, text: string): TemplatedPrompt {
  return { text, tokens: engine.tokenizeTemplated(text) };
}

export const promptText = (p: Prompt): string => (typeof p === "string" ? p : p.text);

/** The prompt tokens the device prefills. */
export function promptTokens(engine: InferenceEngine, p: Prompt): number[] {
  return typeof p === "string" ? engine.tokenize(p) : [...p.tokens];
}
