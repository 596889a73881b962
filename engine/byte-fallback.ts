/**
 * Which texts a SentencePiece (`llama`) vocabulary cannot tokenize
 * (spec Appendix C.2 step 7, PDD-TOK-002): a character with no token of its
 * own falls back to the byte tokens of its UTF-8 bytes, and when one of those
 * is missing there is no tokenization. llama.cpp does not report that: its
 * byte_to_token throws std::out_of_range through the binding, which aborts
 * the process. So the engines ask here before they call llama.cpp.
 */
import { ErrorCode, PddError } from "../proto/index.js";
import type { GgufHeader } from "./gguf.js";

/** The first character of `text` that cannot be tokenized, or undefined when every one can. */
export type Untokenizable = (text: string) => string | undefined;

const hex = (b: number) => b.toString(16).toUpperCase().padStart(2, "0");

/** undefined when every byte has a token (every vocabulary we generate), or the tokenizer is not SPM. */
export function untokenizableIn(h: GgufHeader): Untokenizable | undefined {
  const m = h.metadata;
  if (m.get("tokenizer.ggml.model") !== "llama") return undefined;
  const texts = new Set(((m.get("tokenizer.ggml.tokens") as unknown[] | undefined) ?? []).map(String));
  // llama.cpp's byte_to_token: the token "<0xNN>", else the token whose text is the byte itself.
  const missing = new Set<number>();
  for (let b = 0; b < 256; b++)
    if (!texts.has(`<0x${hex(b)}>`) && !(b > 0 && b < 128 && texts.has(String.fromCharCode(b)))) missing.add(b);
  if (missing.size === 0) return undefined;
  const spacePrefix = m.get("tokenizer.ggml.add_space_prefix") !== false;
  const fails = (c: string) => !texts.has(c) && [...Buffer.from(c, "utf8")].some((b) => missing.has(b));
  return (text) => {
    // Steps 3 and 4: the added space prefix, and spaces written as U+2581.
    if (spacePrefix && text.length > 0 && fails("▁")) return " ";
    for (const c of text) if (fails(c === " " ? "▁" : c)) return c;
    return undefined;
  };
}

/** Throws INVALID_ARGUMENT (PDD-TOK-002) for a text the vocabulary cannot tokenize. */
export function checkTokenizable(untokenizable: Untokenizable | undefined, text: string): void {
  const c = untokenizable?.(text);
  if (c === undefined) return;
  const code = `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
  throw new PddError(
    ErrorCode.INVALID_ARGUMENT,
    `the prompt cannot be tokenized: ${code} has no token and a byte of it has no byte token (PDD-TOK-002)`,
  );
}
