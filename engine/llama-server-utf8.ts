/**
 * llama-server fails any request whose answer text is not whole UTF-8: it
 * parses the answer's text (common_chat_parse, "Content-only" format) and
 * answers HTTP 500, or an `error` event mid-stream, "The model produced
 * output that does not match the expected Content-only format". An answer
 * starts broken when its prompt ends inside a character (its first bytes
 * are the rest of that character), and a non-streamed one ends broken when
 * its last token does. The slot therefore never sends a prompt that ends
 * inside a character: it sends the whole-text prefix and lets the backend
 * decode the cut tokens again, which greedy decoding makes the same tokens.
 * @internal
 */
import { ErrorCode, PddError } from "../proto/index.js";

/** How many of the last tokens hold the bytes of an unfinished UTF-8 character at the end of their text (0: none). */
export function tokensInPartialCharacter(tokens: readonly number[], pieces: readonly Uint8Array[]): number {
  const tail: number[] = [];
  const owner: number[] = [];
  for (let i = tokens.length - 1; i >= 0 && tail.length < 4; i--) {
    const piece = pieces[tokens[i]!] ?? new Uint8Array();
    for (let b = piece.length - 1; b >= 0 && tail.length < 4; b--) {
      tail.push(piece[b]!);
      owner.push(i);
    }
  }
  // As llama.cpp's validate_utf8: a lead byte among the last 3 whose character needs more bytes than follow it.
  for (let k = 0; k < Math.min(3, tail.length); k++) {
    const c = tail[k]!;
    const needs = (c & 0xe0) === 0xc0 ? 2 : (c & 0xf0) === 0xe0 ? 3 : (c & 0xf8) === 0xf0 ? 4 : 0;
    if (needs > k + 1) return tokens.length - owner[k]!;
    if ((c & 0xc0) !== 0x80) return 0;
  }
  return 0;
}

/**
 * `tokens` cut back to whole text: `prompt` to send, and `again`, the cut
 * tokens the backend will decode anew. Only answer tokens (from index
 * `answerFrom` on) may be cut: a prompt that itself ends inside a character
 * is one llama-server cannot continue.
 */
export function wholeTextPrefix(
  tokens: readonly number[],
  pieces: readonly Uint8Array[],
  answerFrom: number,
): { prompt: number[]; again: number[] } {
  const cut = tokens.length - tokensInPartialCharacter(tokens, pieces);
  if (cut < Math.min(answerFrom, tokens.length))
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      "the prompt ends inside a UTF-8 character, which llama-server cannot continue (its answer would start broken)",
    );
  return { prompt: tokens.slice(0, cut), again: tokens.slice(cut) };
}
