/** Transport mappings of the wire error registry (spec/13-errors.md §13.3). */
import { ErrorCode } from "../proto/index.js";

const GRPC: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.MALFORMED_FRAME]: 3,
  [ErrorCode.FRAME_TOO_LARGE]: 8,
  [ErrorCode.UNSUPPORTED_VERSION]: 12,
  [ErrorCode.UNSUPPORTED_CODEC]: 12,
  [ErrorCode.PROTOCOL_VIOLATION]: 9,
  [ErrorCode.UNAUTHENTICATED]: 16,
  [ErrorCode.PERMISSION_DENIED]: 7,
  [ErrorCode.INVALID_ARGUMENT]: 3, // a connection error since 1.1 (§13.3)
  [ErrorCode.UNAVAILABLE]: 14,
  [ErrorCode.TIMEOUT]: 4,
  [ErrorCode.INTERNAL]: 13,
};

/** WebSocket close code for a connection error; 1000 for a normal close. */
export function wsCloseCode(code: ErrorCode): number {
  return code === ErrorCode.UNSPECIFIED ? 1000 : 4000 + code;
}

/** The PDD code a WebSocket close code stands for. */
export function fromWsCloseCode(close: number): ErrorCode {
  if (close >= 4000 && close < 4100) return (close - 4000) as ErrorCode;
  if (close === 1009) return ErrorCode.FRAME_TOO_LARGE;
  if (close === 1000 || close === 1001 || close === 1005) return ErrorCode.UNSPECIFIED;
  if (close === 1002 || close === 1003 || close === 1007) return ErrorCode.MALFORMED_FRAME;
  return ErrorCode.UNAVAILABLE;
}

/** gRPC status code (numeric, as in Connect's Code enum) for a PDD code. */
export function grpcStatus(code: ErrorCode): number {
  return code === ErrorCode.UNSPECIFIED ? 0 : (GRPC[code] ?? 2);
}

/** The PDD code a gRPC status stands for (the inverse where it is one-to-one). */
export function fromGrpcStatus(status: number): ErrorCode {
  if (status === 0) return ErrorCode.UNSPECIFIED;
  if (status === 1) return ErrorCode.CANCELLED;
  for (const [code, s] of Object.entries(GRPC)) if (s === status) return Number(code) as ErrorCode;
  return ErrorCode.UNAVAILABLE;
}

/** Truncates a close reason to the 123 bytes a WebSocket close frame allows. */
export function closeReason(reason: string, maxBytes = 123): string {
  const buf = Buffer.from(reason, "utf8");
  if (buf.length <= maxBytes) return reason;
  let end = maxBytes;
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--; // do not cut a UTF-8 character
  return buf.subarray(0, end).toString("utf8");
}
