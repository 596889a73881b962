/**
 * Sends bytes that are not an encoded frame of ours (a malformed frame, say)
 * through a binding's stream. A test hook, so it lives here and not on the
 * shared MessageStream. @internal test support
 */
import type { MessageStream, SendOptions } from "../message-stream.js";
import { StreamBase } from "../stream-base.js";

export function sendRaw(
  stream: MessageStream<unknown, unknown>,
  frame: Uint8Array,
  options?: SendOptions,
): Promise<void> {
  if (!(stream instanceof StreamBase)) throw new TypeError("sendRaw needs a stream of one of our bindings");
  return stream.sendRaw(frame, options);
}
