import { ErrorCode, PddError } from "../errors.js";

/** @internal Refuses a frame of `size` bytes when it is over `max`. */
export function checkFrameSize(size: number, max: number): void {
  if (size > max) {
    throw new PddError(ErrorCode.FRAME_TOO_LARGE, `frame of ${size} bytes exceeds the limit of ${max} bytes`, {
      local: "ERR_FRAME_TOO_LARGE",
    });
  }
}
