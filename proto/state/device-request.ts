/**
 * The device's state machine for one request (spec/04-state-machines.md §4.1).
 * It checks every frame the cloud sends for the request against §6 and §7 and
 * tells the device what to keep. Pure: no clocks, no I/O.
 */
import type {
  Accepted,
  CloudFrame,
  DeviceFrame,
  End,
  KvChunk,
  PrefillRequest,
  RefinedPrompt,
  Token,
} from "../gen/pdd/v1/pdd_pb.js";
import { PddError } from "../errors.js";
import { violation } from "./violation.js";

export type DevicePhase = "requested" | "accepted" | "streaming" | "stopping" | "failed" | "closed";

/** What one received frame means for the device. */
export type DeviceEvent =
  | { kind: "accepted"; accepted: Accepted }
  | { kind: "tokens"; startIndex: number; tokens: Token[]; discarded: number }
  | { kind: "kv"; chunk: KvChunk; last: boolean }
  | { kind: "refined"; refined: RefinedPrompt }
  | { kind: "error"; error: PddError }
  | { kind: "end"; end: End; keep: number }
  | { kind: "ignored" };

export class DeviceRequestState {
  readonly requestId: number;
  phase: DevicePhase = "requested";
  /** Answer tokens received so far (the next expected index). */
  received = 0;
  /** Cloud tokens [0, keepLimit) may be shown; Infinity until Takeover. */
  keepLimit = Number.POSITIVE_INFINITY;
  takeoverIndex: number | undefined;
  cancelled = false;
  grantedBudget = 0;
  kvGranted = false;
  kvCredit = 0n;
  kvReceived = 0n;
  kvTotal: bigint | undefined;
  private refineAsked: boolean;
  private kvAsked: boolean;
  private refinedSeen = false;
  private maxTokens: number;

  constructor(request: PrefillRequest) {
    this.requestId = request.requestId;
    this.refineAsked = request.refine !== undefined;
    this.kvAsked = request.kv !== undefined;
    this.kvCredit = request.kv?.initialCreditBytes ?? 0n;
    this.maxTokens = request.maxTokens;
  }

  /** Checks a frame the device is about to send for this request. */
  beforeSend(frame: DeviceFrame): void {
    const b = frame.body;
    if (this.phase === "closed" || this.cancelled) {
      if (b.case === "kvCredit" || b.case === "progress") return;
      throw violation("PDD-CANCEL-002", `no ${b.case} after the request is cancelled or ended`, this.requestId);
    }
    if (b.case === "takeover") {
      if (this.takeoverIndex !== undefined) throw violation("PDD-TAKEOVER-002", "a second Takeover", this.requestId);
      if (this.phase === "requested") throw violation("PDD-TAKEOVER-008", "Takeover before Accepted", this.requestId);
      if (b.value.index > this.received) {
        throw violation(
          "PDD-TAKEOVER-001",
          `Takeover at ${b.value.index} but only ${this.received} tokens received`,
          this.requestId,
        );
      }
      this.takeoverIndex = b.value.index;
      this.keepLimit = b.value.index;
      if (this.phase !== "failed") this.phase = "stopping";
    } else if (b.case === "cancel") {
      this.cancelled = true;
      if (this.phase !== "failed") this.phase = "stopping";
    } else if (b.case === "kvCredit") {
      this.kvCredit += b.value.bytes;
    }
  }

  /** Interprets a cloud frame for this request; throws PROTOCOL_VIOLATION. */
  receive(frame: CloudFrame): DeviceEvent {
    const b = frame.body;
    const id = this.requestId;
    if (this.phase === "closed") return { kind: "ignored" };
    if (this.cancelled && b.case !== "end") return { kind: "ignored" };
    switch (b.case) {
      case "accepted": {
        if (this.phase !== "requested")
          throw violation("PDD-ORD-001", "Accepted is not the first frame of the request", id);
        const a = b.value;
        if (a.cloudTokenBudget < 1) throw violation("PDD-REQ-005", "granted budget is 0", id);
        if ((a.kv !== undefined) !== this.kvAsked)
          throw violation("PDD-MSG-008", "Accepted.kv present iff KV was asked", id);
        if ((a.refine !== undefined) !== this.refineAsked)
          throw violation("PDD-MSG-008", "Accepted.refine present iff refinement was asked", id);
        this.grantedBudget = a.cloudTokenBudget;
        this.kvGranted = a.kv?.granted === true;
        this.phase = "accepted";
        return { kind: "accepted", accepted: a };
      }
      case "error":
        if (this.phase === "failed") throw violation("PDD-ORD-004", "a second Error", id);
        this.phase = "failed";
        return { kind: "error", error: errorOf(b.value) };
      case "firstToken":
        this.expectStarted("FirstToken");
        if (this.received !== 0) throw violation("PDD-ORD-002", "a second FirstToken", id);
        if (this.phase === "failed") throw violation("PDD-ORD-004", "FirstToken after Error", id);
        return this.tokens(0, b.value.token ? [b.value.token] : []);
      case "tokenBatch":
        this.expectStarted("TokenBatch");
        if (this.phase === "failed") throw violation("PDD-ORD-004", "TokenBatch after Error", id);
        if (this.received === 0) throw violation("PDD-ORD-002", "TokenBatch before FirstToken", id);
        if (b.value.tokens.length === 0) throw violation("PDD-IDX-002", "empty TokenBatch", id);
        if (b.value.startIndex !== this.received) {
          throw violation("PDD-IDX-001", `TokenBatch starts at ${b.value.startIndex}, expected ${this.received}`, id);
        }
        return this.tokens(b.value.startIndex, b.value.tokens);
      case "kvChunk":
        return this.kv(b.value);
      case "refinedPrompt":
        this.expectStarted("RefinedPrompt");
        if (!this.refineAsked || this.refinedSeen)
          throw violation("PDD-ORD-005", "RefinedPrompt not granted or sent twice", id);
        this.refinedSeen = true;
        return { kind: "refined", refined: b.value };
      case "end": {
        const e = b.value;
        if (this.phase === "requested") throw violation("PDD-ORD-001", "End before Accepted or Error", id);
        if (this.phase === "failed" && e.reason !== 6)
          throw violation("PDD-ORD-004", "End after Error must have reason ERROR", id);
        // After its Cancel the device ignored the cloud's frames (PDD-CANCEL-002), so
        // it cannot check their count: the cloud may have sent its whole budget
        // and End before it read the Cancel (End then has that count and reason).
        if (this.cancelled) {
          this.phase = "closed";
          return { kind: "end", end: e, keep: Math.min(this.received, this.keepLimit) };
        }
        if (e.usage && e.usage.sentTokens < this.received) {
          throw violation("PDD-IDX-006", `usage.sent_tokens ${e.usage.sentTokens} < ${this.received} received`, id);
        }
        if (e.reason === 2 /* TAKEN_OVER */ && e.tokenCount !== this.takeoverIndex) {
          throw violation(
            "PDD-TAKEOVER-005",
            `End{TAKEN_OVER} token_count ${e.tokenCount}, takeover was ${String(this.takeoverIndex)}`,
            id,
          );
        }
        if ((e.reason === 1 || e.reason === 3 || e.reason === 4) && e.tokenCount !== this.received) {
          throw violation(
            "PDD-IDX-004",
            `End token_count ${e.tokenCount} but ${this.received} tokens were received`,
            id,
          );
        }
        this.phase = "closed";
        return { kind: "end", end: e, keep: Math.min(this.received, this.keepLimit) };
      }
      default:
        return { kind: "ignored" };
    }
  }

  private expectStarted(what: string): void {
    if (this.phase === "requested") throw violation("PDD-ORD-001", `${what} before Accepted`, this.requestId);
  }

  private tokens(start: number, tokens: Token[]): DeviceEvent {
    const end = start + tokens.length;
    if (end > this.grantedBudget) {
      throw violation(
        "PDD-IDX-003",
        `token ${end - 1} exceeds the granted budget of ${this.grantedBudget}`,
        this.requestId,
      );
    }
    if (this.maxTokens > 0 && end > this.maxTokens) {
      throw violation("PDD-IDX-003", `token ${end - 1} is beyond max_tokens ${this.maxTokens}`, this.requestId);
    }
    this.received = end;
    if (this.phase === "accepted") this.phase = "streaming";
    const keep = Math.max(0, Math.min(tokens.length, this.keepLimit - start));
    return { kind: "tokens", startIndex: start, tokens: tokens.slice(0, keep), discarded: tokens.length - keep };
  }

  private kv(chunk: KvChunk): DeviceEvent {
    const id = this.requestId;
    this.expectStarted("KvChunk");
    if (!this.kvGranted) throw violation("PDD-KV-001", "KvChunk without a KV grant", id);
    if (chunk.offset !== this.kvReceived)
      throw violation("PDD-KV-004", `chunk at offset ${chunk.offset}, expected ${this.kvReceived}`, id);
    if (chunk.data.length === 0) throw violation("PDD-KV-005", "empty KV chunk", id);
    if (this.kvTotal !== undefined && chunk.totalBytes !== this.kvTotal)
      throw violation("PDD-KV-004", "total_bytes changed between chunks", id);
    this.kvTotal = chunk.totalBytes;
    const next = this.kvReceived + BigInt(chunk.data.length);
    if (next > chunk.totalBytes) throw violation("PDD-KV-004", "chunk runs past total_bytes", id);
    if (next > this.kvCredit)
      throw violation("PDD-KV-008", `${next} KV bytes received, only ${this.kvCredit} granted`, id);
    this.kvReceived = next;
    const last = next === chunk.totalBytes;
    if (last !== chunk.imageSha256.length > 0)
      throw violation("PDD-KV-006", "image_sha256 must be set on the last chunk only", id);
    return { kind: "kv", chunk, last };
  }
}

function errorOf(e: { code: number; message: string; requestId: number; retryable: boolean }): PddError {
  return new PddError(e.code, e.message, { local: "ERR_REMOTE", requestId: e.requestId, retryable: e.retryable });
}
