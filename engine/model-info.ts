/**
 * What a peer announces about a GGUF model, read from the file alone (no
 * llama.cpp): the fingerprints, the token bytes, whether prompts start with
 * BOS, and the KV bytes per position. Both engines (in-process and
 * llama-server) describe their model this way.
 */
import { untokenizableIn, type Untokenizable } from "./byte-fallback.js";
import { fingerprints } from "./fingerprint.js";
import { readGgufHeader } from "./gguf.js";
import type { ModelInfo } from "./inference.js";
import { tokenPieces } from "./pieces.js";

export interface ModelDescription {
  info: ModelInfo;
  pieces: Uint8Array[];
  addBos: boolean;
  /** Bytes of f16 K and V cache per position. */
  kvBytesPerToken: number;
  /** Σ of every tensor's element count, as llama.cpp's n_params counts it. */
  parameters: number;
  embedding: number;
  /** The model's block count (KV images carry one K and one V row per layer). */
  layers: number;
  /** The vocabulary's untokenizable texts (PDD-TOK-002); undefined when there are none. */
  untokenizable: Untokenizable | undefined;
}

/** Reads and hashes `path`; a missing or malformed file is INVALID_ARGUMENT (readGgufHeader). */
export function describeModel(path: string): ModelDescription {
  const header = readGgufHeader(path);
  const fp = fingerprints(path);
  const m = header.metadata;
  const arch = String(m.get("general.architecture") ?? "unknown");
  const tokModel = String(m.get("tokenizer.ggml.model") ?? "");
  const addBos = m.has("tokenizer.ggml.add_bos_token")
    ? m.get("tokenizer.ggml.add_bos_token") === true
    : tokModel === "llama";
  const pieces = tokenPieces(header);
  const num = (k: string, d: number) => Number(m.get(`${arch}.${k}`) ?? d);
  const embedding = num("embedding_length", 0);
  const heads = num("attention.head_count", 1);
  const kvBytesPerToken = num("block_count", 0) * 2 * (embedding / heads) * num("attention.head_count_kv", heads) * 2;
  const parameters = header.tensors.reduce((n, t) => n + t.dims.reduce((a, d) => a * Number(d), 1), 0);
  return {
    info: {
      name: String(m.get("general.name") ?? arch),
      modelFingerprint: fp.model,
      tokenizerFingerprint: fp.tokenizer,
      vocabSize: pieces.length,
      contextLength: num("context_length", 0),
      architecture: arch,
    },
    pieces,
    addBos,
    kvBytesPerToken,
    parameters,
    embedding,
    layers: num("block_count", 0),
    untokenizable: untokenizableIn(header),
  };
}
