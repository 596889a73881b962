/**
 * Spec §13.3: how each binding carries a connection error code when it
 * closes, for the suite's checks of a cloud (cloud role) and for the closes
 * of its own cloud (device role). error-mapping.test.ts reads the table in
 * spec/13-errors.md, so this copy cannot drift from it.
 */

/** The gRPC status of each connection error code; any other code is UNKNOWN (2). */
const GRPC_STATUS: Readonly<Record<number, number>> = {
  1: 3, // MALFORMED_FRAME → INVALID_ARGUMENT
  2: 8, // FRAME_TOO_LARGE → RESOURCE_EXHAUSTED
  3: 12, // UNSUPPORTED_VERSION → UNIMPLEMENTED
  4: 12, // UNSUPPORTED_CODEC → UNIMPLEMENTED
  5: 9, // PROTOCOL_VIOLATION → FAILED_PRECONDITION
  6: 16, // UNAUTHENTICATED
  7: 7, // PERMISSION_DENIED
  9: 3, // INVALID_ARGUMENT (a connection error since 1.1)
  12: 14, // UNAVAILABLE
  19: 4, // TIMEOUT → DEADLINE_EXCEEDED
  20: 13, // INTERNAL
};
const GRPC_UNKNOWN = 2;

export type Binding = "websocket" | "grpc" | "webtransport";

/** The close code (WebSocket), status (gRPC) or session code (WebTransport) that carries PDD code `code`. */
export function closeCodeFor(binding: Binding, code: number): number {
  if (binding === "websocket") return 4000 + code;
  if (binding === "grpc") return GRPC_STATUS[code] ?? GRPC_UNKNOWN;
  return code;
}

/** Whether a binding's close code carries PDD `codeNumber` (WebSocket also allows 1009 for FRAME_TOO_LARGE). */
export function closeCarries(binding: string, close: number, codeNumber: number): boolean {
  if (binding === "websocket" && codeNumber === 2 && close === 1009) return true;
  return close === closeCodeFor(binding === "grpc" || binding === "webtransport" ? binding : "websocket", codeNumber);
}
