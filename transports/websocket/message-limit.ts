/**
 * The per-connection message limit of a `ws` socket. ws takes `maxPayload`
 * once, per server, and checks it at each frame header before it buffers the
 * payload; it has no public way to change it on an open socket (websockets/ws
 * pull request 1473 was declined). The cloud needs two limits on one socket:
 * 64 KiB until the Hello is in (PDD-LIMIT-002, judged on the declared length so
 * a parked 4 MiB first frame costs nothing), then the connection's own. So the
 * stream raises the receiver's `_maxPayload` (ws 8) after the first message,
 * and `assertWsMessageLimitWorks()` checks at server start that ws still keeps
 * it there: an upgrade of ws that moves it stops the server with a clear error
 * instead of silently holding every frame to 64 KiB (message-limit.test.ts pins
 * the behaviour). @internal
 */
import * as ws from "ws";
import { ErrorCode, PddError } from "../../proto/index.js";

type Receiver = { _maxPayload: number };

function isReceiver(r: unknown): r is Receiver {
  return typeof r === "object" && r !== null && typeof Reflect.get(r, "_maxPayload") === "number";
}

const moved = () =>
  new PddError(
    ErrorCode.INTERNAL,
    "this version of ws keeps no _maxPayload on its receiver: the 64 KiB Hello limit cannot be raised after the Hello (transports/websocket/message-limit.ts)",
  );

/** Throws INTERNAL unless ws's receiver keeps its limit where raiseMessageLimit changes it. */
export function assertWsMessageLimitWorks(): void {
  // ws exports its Receiver (wrapper.mjs, index.js); @types/ws does not declare it.
  const ReceiverClass: unknown = Reflect.get(ws, "Receiver");
  if (typeof ReceiverClass !== "function") throw moved();
  const probe: unknown = new (ReceiverClass as new (o: { maxPayload: number }) => unknown)({ maxPayload: 12_345 });
  if (!isReceiver(probe) || probe._maxPayload !== 12_345) throw moved();
}

/** The receiver's message limit; undefined when ws keeps none where expected. */
export function messageLimitOf(receiverOrSocket: unknown): number | undefined {
  const r = receiverOf(receiverOrSocket);
  return r?._maxPayload;
}

/** From now on messages up to `max` bytes pass (PDD-LIMIT-002: after the Hello). Throws INTERNAL when ws changed. */
export function raiseMessageLimit(receiverOrSocket: unknown, max: number): void {
  const r = receiverOf(receiverOrSocket);
  if (!r) throw moved();
  r._maxPayload = max;
}

/** A socket's receiver (`ws._receiver`), or the receiver itself. */
function receiverOf(x: unknown): Receiver | undefined {
  if (isReceiver(x)) return x;
  const r: unknown = typeof x === "object" && x !== null ? Reflect.get(x, "_receiver") : undefined;
  return isReceiver(r) ? r : undefined;
}
