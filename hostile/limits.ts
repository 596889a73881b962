/**
 * The limits this suite holds the peers to. They began as the suite's
 * proposals (README.md, "Spec limits the fixes need"); those the spec adopted
 * are re-exported from proto/ (spec §11.1), so the suite and the spec cannot
 * drift. Those marked "effect" are not read by a case: the cases assert what
 * the limit is for (no stall, no memory), so any limit that achieves it passes.
 */

/** PDD-REQ-009: the largest target_tpot_us a request may ask (1 s per token); a larger one is refused INVALID_ARGUMENT. */
export { MAX_TARGET_TPOT_US } from "../proto/index.js";
/** PDD-LIMIT-002: a frame before HelloAck larger than this is refused on its declared length. (effect) */
export { FIRST_FRAME_MAX_BYTES as PRE_HELLO_MAX_FRAME_BYTES } from "../proto/index.js";
/** PDD-LIMIT-007: entries in each of Hello's lists (versions, codecs, kv_formats); more: INVALID_ARGUMENT. (effect) */
export { MAX_HELLO_LIST_ENTRIES as MAX_HELLO_REPEATED } from "../proto/index.js";
/** An Error's message, and a log line about a peer's input, carry at most this many bytes. */
export { MAX_ERROR_MESSAGE_BYTES } from "../proto/index.js";
/** PDD-DOS-002: a connection whose peer takes no byte for this long while data waits is ended. */
export { WRITE_DEADLINE_MS } from "../proto/index.js";
/** A device waits at most this long for a granted KV image to start or to progress before recomputing. */
export const KV_DEADLINE_MS = 10_000;
/** Transport-level handshake: a session that opens no control stream / sends no Hello is closed after this (cloud default 10 s). (effect) */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * A silent peer is lost within the dead-peer timeout (30 s, the cloud's default; `pdd cloud` does not expose it)
 * plus 5 s of keep-alive granularity, on every binding. Before the fixes: gRPC 30 s, WebSocket 45 s (its check ran
 * every 15 s), WebTransport never.
 */
export const DEAD_PEER_DETECTION_MS = 30_000 + 5_000;
/** PDD-DOS-001: Pings a cloud answers per connection per second; beyond, it may close the connection (RESOURCE_EXHAUSTED). (effect) */
export { MAX_PINGS_PER_SECOND } from "../proto/index.js";
/** `pdd device serve`: requests generating at once (its default `--parallel`). */
export const SERVE_PARALLEL = 4;
/** `pdd device serve`: requests waiting behind the running ones before 503 + Retry-After (its default `--queue`). */
export const SERVE_QUEUE_LIMIT = 8;
