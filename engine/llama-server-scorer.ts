/**
 * Refinement for the llama-server engine. Surprisal-drop refinement needs
 * -ln p(token | tokens before) for the prompt, and llama-server's
 * /completion gives log-probabilities of generated tokens only. So, as
 * LLMLingua does, a small model in the cloud process (node-llama-cpp, one
 * sequence) scores the prompt. It must tokenize exactly as the backends'
 * model: RefinedPrompt's spans index the cloud's prompt tokens, so its
 * tokenizer fingerprint must equal the served model's.
 * @internal
 */
import { ErrorCode, PddError } from "../proto/index.js";
import { Engine } from "./engine.js";
import { sameBytes } from "./fingerprint.js";
import type { ModelInfo } from "./inference.js";

export class PromptScorer {
  private constructor(
    private readonly engine: Engine,
    /** The scoring model's file, as given. */
    readonly modelPath: string,
  ) {}

  /** Loads `modelPath`; INVALID_ARGUMENT when it tokenizes otherwise than `served`. */
  static async load(modelPath: string, served: ModelInfo): Promise<PromptScorer> {
    const engine = await Engine.load({ modelPath, sequences: 1, threads: 1 });
    if (!sameBytes(engine.info.tokenizerFingerprint, served.tokenizerFingerprint)) {
      await engine.close();
      throw new PddError(
        ErrorCode.INVALID_ARGUMENT,
        `the refinement model ${modelPath} tokenizes otherwise than the served model ${served.name}: ` +
          "its scores would not index the cloud's prompt tokens",
      );
    }
    return new PromptScorer(engine, modelPath);
  }

  /** Its identity as RefinedPrompt.scorer names it (PDD-REF-011): the positions it runs with, not its trained length. */
  get info(): ModelInfo {
    return { ...this.engine.info, contextLength: this.engine.contextSize };
  }

  /** -ln p(token i | tokens before i) for every token but the first (NaN there), as a prefill with surprisal. */
  async surprisal(tokens: readonly number[]): Promise<Float64Array> {
    const slot = await this.engine.acquire();
    try {
      const { surprisal } = await slot.prefill(tokens, { surprisal: true });
      return surprisal ?? new Float64Array(tokens.length).fill(Number.NaN);
    } finally {
      await slot.release();
    }
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
