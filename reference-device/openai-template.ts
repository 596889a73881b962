/**
 * The chat template: messages → the prompt text, which the device tokenizes
 * with its control tokens (prompt.ts; the protocol carries no template,
 * PDD-REQ-001).
 *
 * - A model whose GGUF has `tokenizer.chat_template` (or a template file the
 *   user gives) is rendered with node-llama-cpp's Jinja support
 *   (JinjaTemplateChatWrapper), as llama-server renders it, with the
 *   generation prompt added.
 * - A model without one (the generated presets other than the embedded
 *   default, tiny, which has ChatML) gets the fallback: one "role: content"
 *   line per message, then "assistant:".
 *
 * The template's BOS is dropped (the tokenizer adds it when the model wants
 * one); other control tokens are spelled as their text, which
 * `tokenizeTemplated` turns into the control tokens, as llama-server does.
 * The cloud gets those IDs when it shares the tokenizer (PDD-REQ-002); a
 * cloud with another tokenizer gets the text, whose markers its model sees
 * as ordinary characters (PDD-TOK-001, `parse_special = false`).
 * @internal
 */
import { readFileSync } from "node:fs";
import { compileChatTemplate, readGgufHeader, type InferenceEngine } from "../engine/index.js";
import { ApiError } from "./openai-errors.js";
import type { ChatMessage } from "./openai-schema.js";

export interface ChatTemplate {
  /** Where the template came from: "gguf" (tokenizer.chat_template), "file", or "fallback". */
  readonly source: "gguf" | "file" | "fallback";
  render(messages: readonly ChatMessage[]): string;
}

/** The documented fallback for models without a template. */
export const FALLBACK_TEMPLATE: ChatTemplate = {
  source: "fallback",
  render: (messages) => `${messages.map((m) => `${m.role}: ${m.content}`).join("\n")}\nassistant:`,
};

/** The template text a loaded llama.cpp model carries, if any (SimEngine and others: none). */
function ggufTemplate(engine: InferenceEngine): { template: string; eos: string } | undefined {
  const path = (engine as { modelPath?: unknown }).modelPath;
  if (typeof path !== "string") return undefined;
  const meta = readGgufHeader(path).metadata;
  const template = meta.get("tokenizer.chat_template");
  if (typeof template !== "string" || template.length === 0) return undefined;
  const eosId = Number(meta.get("tokenizer.ggml.eos_token_id") ?? -1);
  const eos = engine.pieces[eosId] ? Buffer.from(engine.pieces[eosId]).toString("utf8") : "";
  return { template, eos };
}

/**
 * The chat template for `engine`: `templateFile` when given, else the GGUF's,
 * else the fallback. A template node-llama-cpp cannot load is an error at
 * start-up, not a silent fallback.
 */
export async function loadChatTemplate(engine: InferenceEngine, templateFile?: string): Promise<ChatTemplate> {
  const fromModel = ggufTemplate(engine);
  const template = templateFile !== undefined ? readFileSync(templateFile, "utf8") : fromModel?.template;
  if (template === undefined) return FALLBACK_TEMPLATE;
  let render: Awaited<ReturnType<typeof compileChatTemplate>>;
  try {
    render = await compileChatTemplate(template, fromModel?.eos ?? "");
  } catch (e) {
    throw new Error(`the chat template cannot be used: ${(e as Error).message}`);
  }
  return {
    source: templateFile !== undefined ? "file" : "gguf",
    render(messages) {
      try {
        return render(messages);
      } catch (e) {
        throw ApiError.invalid("messages", `the model's chat template refused them: ${(e as Error).message}`);
      }
    },
  };
}
