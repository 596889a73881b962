/**
 * The exact bytes each token stands for (spec PDD-MSG-004), computed from the
 * GGUF vocabulary rather than from a detokenizer, because a token may carry
 * part of a UTF-8 character that no string can hold.
 */
import type { GgufHeader, GgufValue } from "./gguf.js";

const EMPTY = new Uint8Array(0);

/** GPT-2's byte ⇄ printable-unicode table, inverted. */
function gpt2ByteDecoder(): Map<string, number> {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return new Map(bs.map((b, i) => [String.fromCodePoint(cs[i]!), b]));
}

export function tokenPieces(h: GgufHeader): Uint8Array[] {
  const tokens = (h.metadata.get("tokenizer.ggml.tokens") as GgufValue[] | undefined) ?? [];
  const types = (h.metadata.get("tokenizer.ggml.token_type") as number[] | undefined) ?? [];
  const model = String(h.metadata.get("tokenizer.ggml.model") ?? "");
  const decoder = model === "gpt2" ? gpt2ByteDecoder() : undefined;
  return tokens.map((t, i) => {
    const text = String(t);
    const type = types[i] ?? 1;
    if (type === 2 || type === 3) return EMPTY; // unknown, control
    if (type === 6) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
      if (m) return Uint8Array.of(parseInt(m[1]!, 16));
    }
    if (decoder) {
      const out: number[] = [];
      for (const ch of text) {
        const b = decoder.get(ch);
        if (b === undefined) return new Uint8Array(Buffer.from(text, "utf8"));
        out.push(b);
      }
      return Uint8Array.from(out);
    }
    return new Uint8Array(Buffer.from(text.replace(/▁/g, " "), "utf8"));
  });
}
