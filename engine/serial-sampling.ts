/**
 * One sampling at a time per llama.cpp context.
 *
 * When a batch holds several sequences, llama.cpp may compute their outputs
 * in another order than the batch's (split_equal groups consecutive sequence
 * IDs: a batch of sequences 0, 2, 1, 3 is computed as 0, 1 then 2, 3) and puts
 * them back in order lazily, on the first logits read after the decode
 * (`llama_context::output_reorder`). That reorder is not thread-safe, and
 * node-llama-cpp samples each sequence on its own libuv worker: two workers
 * that reorder at once apply the swaps twice, and each sequence samples from
 * the other's logits. Seen under CPU load as one answer repeating a token that
 * a concurrent answer lost (reference-device/openai.test.ts, issue 13 session).
 * Sampling one call at a time lets the first read reorder and the rest read
 * ordered logits; sampling is microseconds next to the decode it follows.
 * @internal
 */
import type { LlamaContext } from "node-llama-cpp";
import { ErrorCode, PddError } from "../proto/index.js";

type AsyncFn = (...args: never[]) => Promise<unknown>;

/** `fn` with its calls run one after another, in call order; results and rejections pass through. */
export function oneAtATime<F extends AsyncFn>(fn: F): F {
  let tail: Promise<unknown> = Promise.resolve();
  const serial = (...args: Parameters<F>) => {
    const run = tail.then(() => fn(...args));
    tail = run.catch(() => undefined);
    return run;
  };
  return serial as F;
}

/**
 * Makes `context`'s native sampling (`_ctx.sampleToken`, node-llama-cpp 3.x
 * internals) one call at a time. Throws when node-llama-cpp no longer has it,
 * so that an upgrade fails loudly here rather than mixing answers again.
 */
export function serializeSampling(context: LlamaContext): void {
  const native: unknown = Reflect.get(context, "_ctx");
  const sample: unknown = typeof native === "object" && native ? Reflect.get(native, "sampleToken") : undefined;
  if (typeof sample !== "function")
    throw new PddError(
      ErrorCode.INTERNAL,
      "node-llama-cpp's context has no _ctx.sampleToken: concurrent sequences cannot be sampled safely (see engine/serial-sampling.ts)",
    );
  const bound = (sample as AsyncFn).bind(native);
  // The native method is read-only on the prototype; an own property shadows it.
  Object.defineProperty(native, "sampleToken", { value: oneAtATime(bound), configurable: true });
}
