/**
 * The two error spaces of pd-device (spec/13-errors.md).
 *
 * - Wire codes (`ErrorCode`, generated from pdd.proto) cross the wire in Error,
 *   Cancel and Goodbye frames and map onto each transport's close codes.
 * - Local codes (`LocalCode`) are strings that describe what happened inside
 *   this process. They never go on the wire; each one maps to a wire code so a
 *   peer can always be told something precise.
 */
import { ErrorCode } from "./gen/pdd/v1/pdd_pb.js";

export { ErrorCode };

/** Local error codes. Stable strings; documented in spec/13-errors.md §13.4. */
export type LocalCode =
  | "ERR_FRAME_TRUNCATED"
  | "ERR_FRAME_TOO_LARGE"
  | "ERR_FRAME_DECODE"
  | "ERR_FRAME_SCHEMA"
  | "ERR_FRAME_EMPTY"
  | "ERR_CODEC_UNKNOWN"
  | "ERR_STATE"
  | "ERR_CLOSED"
  | "ERR_TIMEOUT"
  | "ERR_REMOTE"
  | "ERR_INTERNAL";

const DEFAULT_LOCAL: Record<number, LocalCode> = {
  [ErrorCode.MALFORMED_FRAME]: "ERR_FRAME_DECODE",
  [ErrorCode.FRAME_TOO_LARGE]: "ERR_FRAME_TOO_LARGE",
  [ErrorCode.PROTOCOL_VIOLATION]: "ERR_STATE",
  [ErrorCode.TIMEOUT]: "ERR_TIMEOUT",
};

/** Codes a client may retry without changing the request (spec §13.2). */
const RETRYABLE = new Set<ErrorCode>([ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT]);

/** Where a code travels (§13.2): a connection Error, a request Error or Cancel, a KvAbort, a refused grant. */
export type ErrorScope = "conn" | "req" | "kv" | "grant";

/** §13.2: the scopes each code may be sent in, and by whom. @internal (a table the tests may alter) */
export const ERROR_SCOPES: Record<number, { scopes: ErrorScope[]; from: ("cloud" | "device")[] }> = {
  [ErrorCode.MALFORMED_FRAME]: { scopes: ["conn"], from: ["cloud", "device"] },
  [ErrorCode.FRAME_TOO_LARGE]: { scopes: ["conn"], from: ["cloud", "device"] },
  [ErrorCode.UNSUPPORTED_VERSION]: { scopes: ["conn"], from: ["cloud", "device"] },
  [ErrorCode.UNSUPPORTED_CODEC]: { scopes: ["conn"], from: ["cloud", "device"] },
  [ErrorCode.PROTOCOL_VIOLATION]: { scopes: ["conn", "req", "kv"], from: ["cloud", "device"] },
  [ErrorCode.UNAUTHENTICATED]: { scopes: ["conn"], from: ["cloud"] },
  [ErrorCode.PERMISSION_DENIED]: { scopes: ["conn", "req"], from: ["cloud"] },
  [ErrorCode.DUPLICATE_REQUEST_ID]: { scopes: ["conn"], from: ["cloud"] },
  [ErrorCode.INVALID_ARGUMENT]: { scopes: ["conn", "req", "grant"], from: ["cloud", "device"] },
  [ErrorCode.PROMPT_TOO_LONG]: { scopes: ["req"], from: ["cloud"] },
  [ErrorCode.RESOURCE_EXHAUSTED]: { scopes: ["req", "kv"], from: ["cloud", "device"] },
  [ErrorCode.UNAVAILABLE]: { scopes: ["conn", "req"], from: ["cloud"] },
  [ErrorCode.DEADLINE_EXCEEDED]: { scopes: ["req"], from: ["cloud"] },
  [ErrorCode.MODEL_MISMATCH]: { scopes: ["grant"], from: ["cloud"] },
  [ErrorCode.TOKENIZER_MISMATCH]: { scopes: ["req", "grant"], from: ["cloud"] },
  [ErrorCode.KV_INTEGRITY]: { scopes: ["kv"], from: ["device"] },
  [ErrorCode.FLOW_CONTROL]: { scopes: ["kv"], from: ["device"] },
  [ErrorCode.CANCELLED]: { scopes: ["req", "kv"], from: ["device"] },
  [ErrorCode.TIMEOUT]: { scopes: ["conn", "req"], from: ["cloud", "device"] },
  [ErrorCode.INTERNAL]: { scopes: ["conn", "req"], from: ["cloud", "device"] },
  [ErrorCode.UNSUPPORTED_FEATURE]: { scopes: ["grant"], from: ["cloud"] },
};

/**
 * A code as received from `from` in `scope`: itself when §13.2 gives it
 * there, else INTERNAL (PDD-ERR-003; the frame still acts as its type says).
 */
export function receivedCode(code: ErrorCode, scope: ErrorScope, from: "cloud" | "device"): ErrorCode {
  const row = ERROR_SCOPES[code];
  return row?.scopes.includes(scope) && row.from.includes(from) ? code : ErrorCode.INTERNAL;
}

/** Lower-case wire name of a code, e.g. `malformed_frame`. */
export function errorCodeName(code: ErrorCode): string {
  const name = ErrorCode[code] as string | undefined;
  return name === undefined ? `code_${code}` : name.toLowerCase();
}

export function isRetryable(code: ErrorCode): boolean {
  return RETRYABLE.has(code);
}

export interface PddErrorOptions {
  local?: LocalCode;
  requestId?: number;
  retryable?: boolean;
  cause?: unknown;
}

/** The one error type of pd-device. Messages are prefixed `[wire_code] …`. */
export class PddError extends Error {
  override readonly name = "PddError";
  readonly code: ErrorCode;
  readonly local: LocalCode;
  /** 0 for connection scope. */
  readonly requestId: number;
  readonly retryable: boolean;
  /** The message without the code prefix, as sent on the wire. */
  readonly rawMessage: string;

  constructor(code: ErrorCode, message: string, options: PddErrorOptions = {}) {
    super(`[${errorCodeName(code)}] ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.rawMessage = message;
    this.local = options.local ?? DEFAULT_LOCAL[code] ?? (code === ErrorCode.INTERNAL ? "ERR_INTERNAL" : "ERR_REMOTE");
    this.requestId = options.requestId ?? 0;
    this.retryable = options.retryable ?? isRetryable(code);
  }

  /** Normalises anything thrown into a PddError; non-PDD errors become INTERNAL. */
  static from(reason: unknown, fallback: ErrorCode = ErrorCode.INTERNAL): PddError {
    if (reason instanceof PddError) return reason;
    if (reason instanceof Error) {
      return new PddError(fallback, reason.message, { cause: reason });
    }
    return new PddError(fallback, String(reason), { cause: reason });
  }
}
