/**
 * `pdd model create`: writes a deterministic llama-architecture GGUF.
 *
 * The weights are random (seeded) except for a "skeleton" in the output
 * layer: each token of SKELETON_TEXT's tokenization points at the next one,
 * so greedy decoding spells a known sentence — with multi-byte characters
 * split across byte tokens — while small random attention and FFN weights
 * keep the next token dependent on the context. Prefill costs what any llama
 * of that shape costs.
 */
import { closeSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { prngNormal } from "./random.js";
import { GgufType, writeGguf, type MetaEntry, type TensorSpec } from "./gguf.js";
import { buildVocab, layoutTokens, SKELETON_TEXT, type VocabEntry, type VocabName } from "./vocab.js";

/** tokenizer.ggml.eos_token_id of every generated model. */
const EOS_ID = 2;

export interface ModelShape {
  vocab: VocabName;
  embedding: number;
  layers: number;
  heads: number;
  feedForward: number;
  contextLength: number;
  /** 0 = F32, 1 = F16 */
  type: 0 | 1;
  seed: number;
  /** Strength of the sentence skeleton in the output layer (default 6). */
  skeleton?: number;
  /** Scale of the attention and FFN outputs added to the residual stream (default 0.5). */
  mix?: number;
  /** A Jinja chat template for `tokenizer.chat_template` (not in the fingerprints); tiny has CHATML_TEMPLATE. */
  chatTemplate?: string;
  /**
   * The vocabulary ends with ChatML's `<|im_start|>` and `<|im_end|>` control
   * tokens (CHAT_TOKENS), which a templated chat prompt is tokenized into (default false).
   */
  chatTokens?: boolean;
  /**
   * The sentence's last token (".") is followed by end-of-generation (EOS,
   * id 2) instead of the sentence's first token: answers end (default false).
   */
  eos?: boolean;
  /**
   * A byte whose byte token (`<0xNN>`) is renamed to an unused token: a
   * vocabulary in which a character needing that byte cannot be tokenized
   * (PDD-TOK-002). Token IDs stay those of the full vocabulary.
   */
  missingByte?: number;
}

/**
 * ChatML, the embedded default model's chat template, so `pdd device serve`
 * renders chats through the Jinja path a user's instruct GGUF takes. Outside
 * the fingerprints (spec Appendix B): a cached tiny without it is the same model.
 */
export const CHATML_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** The tiny model's shape, which its variants below share. */
const TINY = {
  vocab: "a",
  embedding: 64,
  layers: 2,
  heads: 4,
  feedForward: 192,
  contextLength: 4096,
  type: 1,
  seed: 1,
  chatTokens: true,
} as const satisfies ModelShape;

export const PRESETS = {
  /** ~0.2M parameters, ~0.5 MB: the embedded default and the test model; the only preset with a chat template. */
  tiny: { ...TINY, chatTemplate: CHATML_TEMPLATE },
  /**
   * tiny whose answers end: greedy decoding finishes the sentence, then emits
   * EOS. The model of the end-of-generation cases (cloud.eos, device.end.eos).
   */
  "tiny-eos": { ...TINY, eos: true },
  /**
   * tiny with a 128-token context: a cloud whose limits are tight, against which
   * the conformance suite must size its prompts or say "not offered" (issue 15).
   */
  "tiny-ctx128": { ...TINY, contextLength: 128 },
  /** Same vocabulary as tiny, larger: a cloud model that differs from the device's. */
  small: {
    vocab: "a",
    embedding: 128,
    layers: 4,
    heads: 4,
    feedForward: 384,
    contextLength: 4096,
    type: 1,
    seed: 2,
    chatTokens: true,
  },
  /** Another vocabulary and size: a device model whose tokenizer differs. */
  "tiny-b": {
    vocab: "b",
    embedding: 48,
    layers: 2,
    heads: 4,
    feedForward: 128,
    contextLength: 4096,
    type: 1,
    seed: 3,
    skeleton: 10,
    mix: 0.25,
  },
  /**
   * Vocabulary "a" on the smallest llama llama.cpp loads, ~60 KB: the spec's
   * fingerprint and tokenization test vectors (spec/vectors/), small enough
   * to commit.
   */
  spec: { vocab: "a", embedding: 8, layers: 1, heads: 2, feedForward: 16, contextLength: 256, type: 1, seed: 5 },
  /**
   * tiny without the byte token <0xF4>: a character of U+100000…U+10FFFF has
   * no tokenization. The model of the untokenizable-prompt case (PDD-TOK-002).
   */
  "tiny-nobyte": { ...TINY, missingByte: 0xf4 },
  /** ~86M parameters, ~175 MB: prefill has a real cost (benchmarks). */
  bench: {
    vocab: "a",
    embedding: 768,
    layers: 12,
    heads: 12,
    feedForward: 2048,
    contextLength: 4096,
    type: 1,
    seed: 4,
    chatTokens: true,
  },
} as const satisfies Record<string, ModelShape>;

export type PresetName = keyof typeof PRESETS;

export function parameterCount(shape: ModelShape): number {
  const n = buildVocab(shape.vocab, shape.chatTokens).length;
  const d = shape.embedding;
  return 2 * n * d + d + shape.layers * (2 * d + 4 * d * d + 3 * d * shape.feedForward);
}

/** Writes the model to `path` (atomically). `onProgress` gets the fraction done. */
export function createModel(path: string, shape: ModelShape, onProgress?: (fraction: number) => void): void {
  const vocab = withoutByteToken(buildVocab(shape.vocab, shape.chatTokens), shape.missingByte);
  const headDim = shape.embedding / shape.heads;
  if (!Number.isInteger(headDim)) throw new RangeError("embedding must be a multiple of heads");
  const rand = prngNormal(shape.seed);
  const skeleton = buildSkeleton(vocab, shape.embedding, rand, shape.eos);
  const tensors = modelTensors(shape, vocab.length, skeleton, rand);
  writeAtomically(path, modelMetadata(shape, vocab, headDim), tensors, onProgress);
}

function withoutByteToken(vocab: VocabEntry[], byte: number | undefined): VocabEntry[] {
  if (byte === undefined) return vocab;
  const text = `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;
  const i = vocab.findIndex((e) => e.piece === text);
  if (i < 0 || SKELETON_BYTES.has(byte)) throw new RangeError(`byte ${byte} has no token, or the skeleton needs it`);
  return vocab.map((e, j) => (j === i ? { piece: `<unused${byte}>`, score: 0, type: 5 } : e));
}

const SKELETON_BYTES = new Set(Buffer.from(SKELETON_TEXT, "utf8"));

/** Token embeddings, and the skeleton sentence's successor of every token (-1: none). */
interface Skeleton {
  embed: Float32Array;
  next: Int32Array;
}

function buildSkeleton(vocab: ReturnType<typeof buildVocab>, d: number, rand: () => number, eos = false): Skeleton {
  const embed = new Float32Array(vocab.length * d);
  // Unit-variance entries: the residual stream (norm ≈ √d) stays dominated by
  // the token embedding, so the skeleton decides most next tokens.
  for (let i = 0; i < embed.length; i++) embed[i] = rand();
  const cycle = layoutTokens(vocab, SKELETON_TEXT);
  const next = new Int32Array(vocab.length).fill(-1);
  cycle.forEach((t, i) => {
    next[t] = cycle[(i + 1) % cycle.length]!;
  });
  if (eos) next[cycle[cycle.length - 1]!] = EOS_ID;
  return { embed, next };
}

function modelMetadata(shape: ModelShape, vocab: ReturnType<typeof buildVocab>, headDim: number): MetaEntry[] {
  const n = vocab.length;
  const d = shape.embedding;
  const ff = shape.feedForward;
  return [
    ["general.architecture", GgufType.STRING, "llama"],
    ["general.name", GgufType.STRING, `pdd-generated-${shape.vocab}-${d}x${shape.layers}`],
    ["llama.context_length", GgufType.UINT32, shape.contextLength],
    ["llama.embedding_length", GgufType.UINT32, d],
    ["llama.block_count", GgufType.UINT32, shape.layers],
    ["llama.feed_forward_length", GgufType.UINT32, ff],
    ["llama.attention.head_count", GgufType.UINT32, shape.heads],
    ["llama.attention.head_count_kv", GgufType.UINT32, shape.heads],
    ["llama.attention.layer_norm_rms_epsilon", GgufType.FLOAT32, 1e-5],
    ["llama.rope.dimension_count", GgufType.UINT32, headDim],
    ["llama.rope.freq_base", GgufType.FLOAT32, 10000],
    ["llama.vocab_size", GgufType.UINT32, n],
    ["tokenizer.ggml.model", GgufType.STRING, "llama"],
    ["tokenizer.ggml.tokens", GgufType.ARRAY, vocab.map((e) => e.piece), GgufType.STRING],
    ["tokenizer.ggml.scores", GgufType.ARRAY, vocab.map((e) => e.score), GgufType.FLOAT32],
    ["tokenizer.ggml.token_type", GgufType.ARRAY, vocab.map((e) => e.type), GgufType.INT32],
    ["tokenizer.ggml.bos_token_id", GgufType.UINT32, 1],
    ["tokenizer.ggml.eos_token_id", GgufType.UINT32, EOS_ID],
    ["tokenizer.ggml.unknown_token_id", GgufType.UINT32, 0],
    ["tokenizer.ggml.add_bos_token", GgufType.BOOL, true],
    ["tokenizer.ggml.add_eos_token", GgufType.BOOL, false],
    ...(shape.chatTemplate !== undefined
      ? [["tokenizer.chat_template", GgufType.STRING, shape.chatTemplate] satisfies MetaEntry]
      : []),
  ];
}

/**
 * The tensors, each filled when written (so `rand` is drawn in tensor order).
 * The output matrix carries the skeleton; attention and feed-forward weights are noise scaled by `mix`.
 */
function modelTensors(shape: ModelShape, n: number, skeleton: Skeleton, rand: () => number): TensorSpec[] {
  const d = shape.embedding;
  const ff = shape.feedForward;
  const MIX = shape.mix ?? 0.5;
  const gaussian = (scale: number) => (out: Float32Array) => {
    for (let i = 0; i < out.length; i++) out[i] = rand() * scale;
  };
  const ones = (out: Float32Array) => out.fill(1);
  const tensors: TensorSpec[] = [
    { name: "token_embd.weight", dims: [d, n], type: shape.type, fill: (out) => out.set(skeleton.embed) },
    { name: "output_norm.weight", dims: [d], type: 0, fill: ones },
    {
      name: "output.weight",
      dims: [d, n],
      type: shape.type,
      fill: (out) => {
        gaussian(0.02)(out);
        addSkeleton(out, skeleton, d, shape.skeleton ?? 6);
      },
    },
  ];
  for (let l = 0; l < shape.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, dims: [d], type: 0, fill: ones },
      { name: `${p}attn_q.weight`, dims: [d, d], type: shape.type, fill: gaussian(1 / Math.sqrt(d)) },
      { name: `${p}attn_k.weight`, dims: [d, d], type: shape.type, fill: gaussian(1 / Math.sqrt(d)) },
      { name: `${p}attn_v.weight`, dims: [d, d], type: shape.type, fill: gaussian(1 / Math.sqrt(d)) },
      { name: `${p}attn_output.weight`, dims: [d, d], type: shape.type, fill: gaussian(MIX / Math.sqrt(d)) },
      { name: `${p}ffn_norm.weight`, dims: [d], type: 0, fill: ones },
      { name: `${p}ffn_gate.weight`, dims: [d, ff], type: shape.type, fill: gaussian(1 / Math.sqrt(d)) },
      { name: `${p}ffn_up.weight`, dims: [d, ff], type: shape.type, fill: gaussian(1 / Math.sqrt(d)) },
      { name: `${p}ffn_down.weight`, dims: [ff, d], type: shape.type, fill: gaussian(MIX / Math.sqrt(ff)) },
    );
  }
  return tensors;
}

/**
 * Row v of the output matrix scores token v; a token t of the sentence adds
 * its own (normalised) embedding to the row of its successor. Only sentence
 * tokens do: every extra direction summed into a row is noise against the
 * intended one. Other tokens' successors are left to the random weights; "."
 * is in the sentence, so a prompt ending in a full stop enters it at once.
 */
function addSkeleton(out: Float32Array, { embed, next }: Skeleton, d: number, alpha: number): void {
  for (let t = 0; t < next.length; t++) {
    const s = next[t]!;
    if (s < 0) continue;
    let norm = 0;
    for (let k = 0; k < d; k++) norm += embed[t * d + k]! ** 2;
    norm = Math.sqrt(norm);
    for (let k = 0; k < d; k++) out[s * d + k]! += (alpha * embed[t * d + k]!) / norm;
  }
}

function writeAtomically(
  path: string,
  meta: MetaEntry[],
  tensors: TensorSpec[],
  onProgress: ((fraction: number) => void) | undefined,
): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    writeGguf(
      (chunk) => writeSync(fd, chunk),
      meta,
      tensors,
      (i) => onProgress?.((i + 1) / tensors.length),
    );
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
