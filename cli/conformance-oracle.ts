/**
 * The conformance suite's oracle (conformance/oracle.ts) on our engine: the
 * device role's `--model FILE` loads the device's GGUF here, so the suite
 * knows the greedy answer a device that did its work displays and can build
 * loadable KV images. Four sequences, like the reference peers: the image
 * layout depends on the context's stream count (spec §7.2).
 */
import { Engine } from "../engine/index.js";
import type { ModelOracle } from "../conformance/index.js";

export async function engineOracle(modelPath: string): Promise<{ oracle: ModelOracle; close(): Promise<void> }> {
  const engine = await Engine.load({ modelPath, threads: 1, sequences: 4 });
  return { oracle: oracleOn(engine), close: () => engine.close() };
}

/** An oracle on an engine already loaded (tests share theirs). */
export function oracleOn(engine: Engine): ModelOracle {
  return {
    fingerprints: { model: engine.info.modelFingerprint, tokenizer: engine.info.tokenizerFingerprint },
    tokenize: (text) => engine.tokenize(text),
    tokenizeContinuation: (text) => engine.tokenizeContinuation(text),
    piece: (id) => engine.pieces[id] ?? new Uint8Array(),
    async continuation(context, n) {
      const slot = await engine.acquire();
      try {
        await slot.prefill(context);
        const out: number[] = [];
        if (n > 0)
          for await (const id of slot.generate({}, n)) {
            if (engine.isEndOfGeneration(id)) break;
            out.push(id);
          }
        return out;
      } finally {
        await slot.release();
      }
    },
    async continuationAfterImage(image, lastToken, tokens, n) {
      const slot = await engine.acquire();
      try {
        await slot.importState(image, engine.info.modelFingerprint, lastToken);
        await slot.prefill(tokens);
        const out: number[] = [];
        for await (const id of slot.generate({}, n)) {
          if (engine.isEndOfGeneration(id)) break;
          out.push(id);
        }
        return out;
      } catch {
        return undefined; // it did not load
      } finally {
        await slot.release();
      }
    },
    async kvImage(tokens) {
      const slot = await engine.acquire();
      try {
        // prefill keeps its last token pending: a trailing extra token makes every one of `tokens` evaluated.
        await slot.prefill([...tokens, tokens[0] ?? 0]);
        return await slot.exportState();
      } finally {
        await slot.release();
      }
    },
  };
}
