/**
 * The suite's own model (device role, `--model FILE`: the device's GGUF).
 * With it the suite knows what a device that did its work must display: the
 * greedy continuation of its prompt after the suite's tokens. So a device
 * that never prefills, never decodes, or imports a KV image it should have
 * discarded shows a different answer, and the case fails on it.
 *
 * The suite only asks questions of the model; it never uses the
 * implementation's protocol code. The caller (the CLI, a test) supplies an
 * engine that answers them.
 */

/** What the suite asks of its own copy of the device's model. */
export interface ModelOracle {
  /** Appendix B fingerprints of the model the oracle runs. */
  readonly fingerprints: { model: Uint8Array; tokenizer: Uint8Array };
  /** The prompt tokens of a text prompt (PDD-TOK-001: BOS when the model adds one). */
  tokenize(text: string): number[];
  /** The tokens of text that continues earlier text (no BOS, no space prefix). */
  tokenizeContinuation(text: string): number[];
  /** The bytes of one token (PDD-MSG-004). */
  piece(id: number): Uint8Array;
  /** Up to `n` tokens decoded greedily after `context` (fewer at end of generation). */
  continuation(context: number[], n: number): Promise<number[]>;
  /** The KV_FORMAT_LLAMA_SEQ_STATE image (§7.2) of a sequence that evaluated exactly `tokens`. */
  kvImage(tokens: number[]): Promise<Uint8Array>;
  /**
   * What a device that imported `image` decodes: the image's last position
   * re-evaluated as `lastToken` (§7.2), then `tokens`, then up to `n` greedy
   * tokens; undefined when the image does not load.
   */
  continuationAfterImage(
    image: Uint8Array,
    lastToken: number,
    tokens: number[],
    n: number,
  ): Promise<number[] | undefined>;
}

/** The text of tokens, as a device shows it. */
export function textOf(oracle: ModelOracle, ids: number[]): string {
  return Buffer.concat(ids.map((id) => oracle.piece(id))).toString("utf8");
}

/** The answer of a device that continued greedily from `context` plus the cloud's `cloudIds`, `maxTokens` in all. */
export async function expectedAnswer(
  oracle: ModelOracle,
  context: number[],
  cloudIds: number[],
  maxTokens: number,
): Promise<string> {
  const own = await oracle.continuation([...context, ...cloudIds], Math.max(0, maxTokens - cloudIds.length));
  return textOf(oracle, [...cloudIds, ...own]);
}

/** Bytes before Seq-Data in a Llama-Seq-State image of `n` tokens: Magic, Version, Token-Count, the tokens (§7.2). */
const seqStateHeaderBytes = (n: number) => 12 + 4 * n;

/**
 * A loadable image that lies: the prompt's true image (its header names the
 * prompt's own tokens, so a device that checks them, PDD-KV-013, cannot tell)
 * with its KV values overwritten by large ones. Which bytes are KV values is
 * found without parsing llama.cpp's layout: they are the 16-bit words that
 * differ from the image of another context of the same length (headers,
 * cell positions and row sizes are equal in both). A device that imports it
 * continues from a wrecked context; only the checksums the suite sends with
 * it can warn the device.
 */
export async function decoyImage(
  oracle: ModelOracle,
  prompt: number[],
): Promise<{ image: Uint8Array; trueImage: Uint8Array } | undefined> {
  const n = prompt.length;
  if (n < 3) return undefined;
  const filler = oracle.tokenizeContinuation(" zebra")[0] ?? prompt[1]!;
  const other = [prompt[0]!, ...Array.from({ length: n - 2 }, () => filler), prompt[n - 1]!];
  const trueImage = await oracle.kvImage(prompt);
  const otherImage = await oracle.kvImage(other);
  const h = seqStateHeaderBytes(n);
  if (otherImage.length !== trueImage.length || trueImage.length <= h) return undefined;
  const image = Uint8Array.from(trueImage);
  let changed = 0;
  for (let i = h; i + 1 < image.length; i += 2) {
    if (trueImage[i] === otherImage[i] && trueImage[i + 1] === otherImage[i + 1]) continue;
    image[i] = 0x00; // ±32768 as IEEE half floats (llama.cpp's default KV type), alternating
    image[i + 1] = changed++ % 2 ? 0x78 : 0xf8;
  }
  return changed > 0 ? { image, trueImage } : undefined;
}

/** An answer that max_tokens cut inside a character may end in U+FFFD or hold the partial character back. */
export function withoutCutChar(text: string): string {
  return text.replace(/\uFFFD+$/, "");
}
