import { ErrorCode, PddError } from "../errors.js";

/** @internal Refuses a frame of `size` bytes when it is over `max`. */
export function checkFrameSize(size: number, max: number): void {
  if (size > max) {
    throw new PddError(ErrorCode.FRAME_TOO_LARGE, `frame of ${size} bytes exceeds the limit of ${max} bytes`, {
      local: "ERR_FRAME_TOO_LARGE",
    });
  }
}

/** PDD-LIMIT-002: the first frame in each direction (Hello; HelloAck or a connection Error) is at most this many bytes. */
export const FIRST_FRAME_MAX_BYTES = 65_536;
/** PDD-LIMIT-007: entries of Hello.versions, Hello.codecs and Capabilities.kv_formats. */
export const MAX_HELLO_LIST_ENTRIES = 8;
/** PDD-REQ-009: the slowest display pace a PrefillRequest may ask for, µs per token (one token per second). */
export const MAX_TARGET_TPOT_US = 1_000_000;
/** PDD-SEC-007: Error.message and every reason, bytes. */
export const MAX_ERROR_MESSAGE_BYTES = 1024;
/** PDD-DOS-001: Pings a cloud answers on one connection in one second; more may close it with RESOURCE_EXHAUSTED. */
export const MAX_PINGS_PER_SECOND = 1000;
/** PDD-DOS-001: PrefillRequests a cloud takes on one connection in one second; more may close it. */
export const MAX_REQUESTS_PER_SECOND = 1000;
/** PDD-DOS-002: a sender whose peer takes no byte for this long while it has data to send ends the connection. */
export const WRITE_DEADLINE_MS = 10_000;
