/**
 * The two vocabularies of the generated models. Both are llama (SentencePiece)
 * vocabularies with byte fallback: any character without a piece is spelled
 * with the 256 `<0xNN>` byte tokens. Vocabulary "a" has word pieces with the
 * `▁` word marker; vocabulary "b" splits words differently and orders them
 * differently, so the two tokenize the same text into different tokens.
 * @internal
 */
export interface VocabEntry {
  piece: string;
  score: number;
  /** GGUF token type: 1 normal, 2 unknown, 3 control, 6 byte. */
  type: number;
}

export type VocabName = "a" | "b";

const WORDS = (
  "the quick brown fox jumps over lazy dog owls smile naïve and a to of in is it you that he was for on " +
  "are with as his they be at one have this from or had by hot word but what some we can out other were " +
  "all there when up use your how said an each she which do their time if will way about many then them " +
  "write would like so these her long make thing see him two has look more day could go come did number " +
  "sound no most people my over know water than call first who may down side been now find any new work " +
  "part take get place made live where after back little only round man year came show every good me " +
  "give our under name very through just form sentence great think say help low line differ turn cause " +
  "much mean before move right boy old too same tell does set three want air well also play small end " +
  "put home read hand port large spell add even land here must big high such follow act why ask men " +
  "change went light kind off need house picture try us again animal point mother world near build self " +
  "earth father prompt cloud device token model answer fast slow first visitor"
).split(" ");

function uniq<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

/** Every prefix of every piece, so SentencePiece merges can reach the whole piece. */
function withPrefixes(pieces: string[]): string[] {
  const out: string[] = [];
  for (const p of pieces) {
    const chars = [...p];
    for (let i = 2; i <= chars.length; i++) out.push(chars.slice(0, i).join(""));
  }
  return uniq(out);
}

/** ChatML's markers as control tokens (type 3), after every other token, so the other IDs do not move. */
export const CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"] as const;

/**
 * A vocabulary's tokens; with `chatTokens`, CHAT_TOKENS last. Control tokens
 * are never matched in text tokenized without special-token parsing
 * (PDD-TOK-001), so the IDs of every text stay those of the vocabulary without them.
 */
export function buildVocab(name: VocabName, chatTokens = false): VocabEntry[] {
  const v: VocabEntry[] = [
    { piece: "<unk>", score: 0, type: 2 },
    { piece: "<s>", score: 0, type: 3 },
    { piece: "</s>", score: 0, type: 3 },
  ];
  for (let b = 0; b < 256; b++)
    v.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, score: 0, type: 6 });
  const chars = ["▁"];
  for (let c = 33; c < 127; c++) chars.push(String.fromCharCode(c));
  for (const c of chars) v.push({ piece: c, score: -1000, type: 1 });
  const ascii = WORDS.filter((w) => /^[a-z]+$/.test(w));
  let pieces: string[];
  if (name === "a") {
    pieces = withPrefixes([...ascii.map((w) => `▁${w}`), "▁The", "ve", "▁na"]);
  } else {
    // "b": long words split after three letters ("▁qui" + "ck"), in reverse order.
    const split = ascii.flatMap((w) => (w.length > 4 ? [`▁${w.slice(0, 3)}`, w.slice(3)] : [`▁${w}`]));
    pieces = withPrefixes([...split.reverse(), "▁The", "ve", "▁na"]);
  }
  const seen = new Set(v.map((e) => e.piece));
  for (const p of pieces) {
    if (seen.has(p) || [...p].length < 2) continue;
    seen.add(p);
    // Word-initial pieces outrank word-internal ones, so SentencePiece merges
    // run from the start of each word and agree with layoutTokens().
    v.push({ piece: p, score: (p.startsWith("▁") ? 1000 : 0) + [...p].length * 10 - v.length * 1e-4, type: 1 });
  }
  if (chatTokens) for (const piece of CHAT_TOKENS) v.push({ piece, score: 0, type: 3 });
  return v;
}

/**
 * The answer the generated models are built to produce: a cycle of this
 * sentence, which puts a three-byte, a two-byte and a four-byte UTF-8
 * character in byte tokens.
 */
export const SKELETON_TEXT = " The quick brown fox jumps over the lazy dog — naïve owls smile🙂.";

/** Greedy longest-match tokenization with byte fallback (used only to lay out the skeleton). */
export function layoutTokens(vocab: VocabEntry[], text: string): number[] {
  const ids = new Map(vocab.map((e, i) => [e.piece, i]));
  const s = text.replace(/ /g, "▁");
  const out: number[] = [];
  let i = 0;
  const chars = [...s];
  while (i < chars.length) {
    let matched = 0;
    for (let j = chars.length; j > i; j--) {
      const id = ids.get(chars.slice(i, j).join(""));
      if (id !== undefined && vocab[id]!.type === 1) {
        out.push(id);
        matched = j - i;
        break;
      }
    }
    if (matched === 0) {
      for (const byte of Buffer.from(chars[i]!, "utf8")) out.push(3 + byte);
      matched = 1;
    }
    i += matched;
  }
  return out;
}
