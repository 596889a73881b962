/**
 * The inputs of the tokenization test vectors (spec Appendix C.3): each case
 * names the edge it covers. Their expected tokens are in tokenization.json,
 * written by generate.ts from llama.cpp.
 */
export const TOKENIZATION_TEXTS: { text: string; covers: string }[] = [
  { text: "", covers: "the empty text: BOS only, no space prefix (C.2 step 1)" },
  { text: "the", covers: "one word piece after the space prefix" },
  { text: "Hello world", covers: "a character with no piece of its own word (H), then a whole-word piece" },
  { text: "The quick brown fox jumps over the lazy dog.", covers: "ordinary prose" },
  { text: " The quick brown fox", covers: "a leading space: two ▁ in a row" },
  { text: "fox ", covers: "a trailing space" },
  { text: "a  b", covers: "a run of two spaces" },
  { text: "a\n\tb", covers: "a newline and a tab: no piece, byte tokens (C.2 step 7)" },
  { text: "naïve owls smile🙂.", covers: "two-byte and four-byte characters as byte tokens" },
  { text: "日本語", covers: "three-byte characters as byte tokens" },
  { text: "e\u0301", covers: "a combining accent: a character of its own" },
  { text: "▁the", covers: "a literal U+2581, the same as a space after step 4" },
  { text: "<s>x</s>", covers: "control-token text is not a control token (parse_special = false)" },
  { text: "<0x41>", covers: "byte-token text is not a byte token" },
  { text: "thethe", covers: "a word piece that cannot continue without ▁" },
  { text: "prompt cloud device token model answer", covers: "long pieces: the highest score merges first" },
  { text: "ZZZ", covers: "upper-case letters with no piece" },
  { text: "  ", covers: "spaces only" },
];
