/**
 * The suite's own copy of §13.2's "scope" and "sent by" columns (PDD-ERR-003),
 * by code name as the suite decodes it.
 */
type Scope = "conn" | "req" | "kv" | "grant";
const BOTH = ["cloud", "device"] as const;
const CLOUD = ["cloud"] as const;
const DEVICE = ["device"] as const;

const TABLE: Record<string, { scopes: Scope[]; from: readonly ("cloud" | "device")[] }> = {
  MALFORMED_FRAME: { scopes: ["conn"], from: BOTH },
  FRAME_TOO_LARGE: { scopes: ["conn"], from: BOTH },
  UNSUPPORTED_VERSION: { scopes: ["conn"], from: BOTH },
  UNSUPPORTED_CODEC: { scopes: ["conn"], from: BOTH },
  PROTOCOL_VIOLATION: { scopes: ["conn", "req", "kv"], from: BOTH },
  UNAUTHENTICATED: { scopes: ["conn"], from: CLOUD },
  PERMISSION_DENIED: { scopes: ["conn", "req"], from: CLOUD },
  DUPLICATE_REQUEST_ID: { scopes: ["conn"], from: CLOUD },
  INVALID_ARGUMENT: { scopes: ["conn", "req", "grant"], from: BOTH },
  PROMPT_TOO_LONG: { scopes: ["req"], from: CLOUD },
  RESOURCE_EXHAUSTED: { scopes: ["req", "kv"], from: BOTH },
  UNAVAILABLE: { scopes: ["conn", "req"], from: CLOUD },
  DEADLINE_EXCEEDED: { scopes: ["req"], from: CLOUD },
  MODEL_MISMATCH: { scopes: ["grant"], from: CLOUD },
  TOKENIZER_MISMATCH: { scopes: ["req", "grant"], from: CLOUD },
  KV_INTEGRITY: { scopes: ["kv"], from: DEVICE },
  FLOW_CONTROL: { scopes: ["kv"], from: DEVICE },
  CANCELLED: { scopes: ["req", "kv"], from: DEVICE },
  TIMEOUT: { scopes: ["conn", "req"], from: BOTH },
  INTERNAL: { scopes: ["conn", "req"], from: BOTH },
  UNSUPPORTED_FEATURE: { scopes: ["grant"], from: CLOUD },
};

/** Whether §13.2 lets `from` send `code` (e.g. "ERROR_CODE_INTERNAL") in `scope`. */
export function codeAllowed(code: string, scope: Scope, from: "cloud" | "device"): boolean {
  const row = TABLE[code.replace(/^ERROR_CODE_/, "")];
  return row?.scopes.includes(scope) === true && row.from.includes(from);
}
