/**
 * The cloud's state machine for one request (spec/04-state-machines.md §4.2).
 * The reference cloud passes every frame it sends through `beforeSend`, so a
 * bug there can never put a rule-breaking frame on the wire, and every device
 * frame through `receive`. Pure.
 */
import type { CloudFrame, DeviceFrame } from "../gen/pdd/v1/pdd_pb.js";
import { violation } from "./violation.js";

export type CloudPhase = "open" | "accepted" | "streaming" | "stopping" | "failed" | "closed";

/** What a device frame asks of the cloud for this request. */
export type CloudAction =
  | { kind: "takeover"; index: number }
  | { kind: "cancel"; code: number }
  | { kind: "credit"; bytes: bigint }
  | { kind: "kv-abort"; code: number }
  | { kind: "progress" }
  | { kind: "ignored" };

export interface CloudRequestLimits {
  /** Granted budget; set by Accepted. */
  budget?: number;
  maxTokens?: number;
  kvCredit?: bigint;
}

export class CloudRequestState {
  readonly requestId: number;
  phase: CloudPhase = "open";
  sent = 0;
  budget = 0;
  maxTokens: number;
  kvCredit: bigint;
  kvSent = 0n;
  kvGranted = false;
  refineGranted = false;
  private refinedSent = false;
  /** Set when a Takeover or Cancel was processed: no more tokens or KV. */
  stopped: { kind: "takeover"; index: number } | { kind: "cancel" } | undefined;

  constructor(requestId: number, limits: CloudRequestLimits = {}) {
    this.requestId = requestId;
    this.maxTokens = limits.maxTokens ?? 0;
    this.kvCredit = limits.kvCredit ?? 0n;
  }

  get live(): boolean {
    return this.phase !== "closed";
  }

  /** KV bytes the cloud may still send now (§7.4). */
  get kvAvailable(): bigint {
    return this.kvCredit - this.kvSent;
  }

  /** Checks a frame before it goes on the wire; throws on a rule the cloud would break. */
  beforeSend(frame: CloudFrame): void {
    const b = frame.body;
    const id = this.requestId;
    if (this.phase === "closed") throw violation("PDD-ORD-003", `${String(b.case)} after End`, id);
    switch (b.case) {
      case "accepted":
        if (this.phase !== "open") throw violation("PDD-ORD-001", "Accepted twice or after Error", id);
        this.budget = b.value.cloudTokenBudget;
        this.kvGranted = b.value.kv?.granted === true;
        this.refineGranted = b.value.refine?.granted === true;
        this.phase = "accepted";
        return;
      case "error":
        this.phase = "failed";
        return;
      case "firstToken":
        this.tokens("FirstToken", 0, 1);
        return;
      case "tokenBatch":
        if (this.sent === 0) throw violation("PDD-ORD-002", "TokenBatch before FirstToken", id);
        if (b.value.tokens.length === 0) throw violation("PDD-IDX-002", "empty TokenBatch", id);
        if (b.value.startIndex !== this.sent)
          throw violation("PDD-IDX-001", `start_index ${b.value.startIndex}, expected ${this.sent}`, id);
        this.tokens("TokenBatch", b.value.startIndex, b.value.tokens.length);
        return;
      case "kvChunk": {
        if (!this.kvGranted) throw violation("PDD-KV-001", "KvChunk without a grant", id);
        if (this.stopped) throw violation("PDD-KV-010", "KvChunk after Takeover or Cancel", id);
        const n = BigInt(b.value.data.length);
        if (n > this.kvAvailable)
          throw violation("PDD-KV-008", `chunk of ${n} bytes with ${this.kvAvailable} credit left`, id);
        if (b.value.offset !== this.kvSent) throw violation("PDD-KV-004", "chunks out of order", id);
        this.kvSent += n;
        return;
      }
      case "refinedPrompt":
        if (!this.refineGranted || this.refinedSent)
          throw violation("PDD-ORD-005", "RefinedPrompt not granted or twice", id);
        this.refinedSent = true;
        return;
      case "end":
        if (this.phase === "open") throw violation("PDD-ORD-001", "End before Accepted or Error", id);
        if (this.phase === "failed" && b.value.reason !== 6)
          throw violation("PDD-ORD-004", "End after Error must have reason ERROR", id);
        this.phase = "closed";
        return;
      default:
        return;
    }
  }

  private tokens(what: string, start: number, n: number): void {
    const id = this.requestId;
    if (this.phase === "open") throw violation("PDD-ORD-001", `${what} before Accepted`, id);
    if (this.phase === "failed") throw violation("PDD-ORD-004", `${what} after Error`, id);
    if (this.stopped) throw violation("PDD-TAKEOVER-004", `${what} after Takeover or Cancel`, id);
    if (start === 0 && this.sent !== 0) throw violation("PDD-ORD-002", "FirstToken twice", id);
    if (start + n > this.budget)
      throw violation("PDD-IDX-003", `token ${start + n - 1} beyond the budget of ${this.budget}`, id);
    if (this.maxTokens > 0 && start + n > this.maxTokens) throw violation("PDD-IDX-003", "token beyond max_tokens", id);
    this.sent = start + n;
    this.phase = "streaming";
  }

  /** Interprets a device frame for this request. */
  receive(frame: DeviceFrame): CloudAction {
    const b = frame.body;
    if (this.phase === "closed") return { kind: "ignored" }; // PDD-SM-003: crossed our End
    switch (b.case) {
      case "takeover":
        if (this.stopped) return { kind: "ignored" };
        if (b.value.index > this.sent) {
          throw violation(
            "PDD-TAKEOVER-006",
            `Takeover at ${b.value.index} but only ${this.sent} tokens were sent`,
            this.requestId,
          );
        }
        this.stopped = { kind: "takeover", index: b.value.index };
        this.phase = "stopping";
        return { kind: "takeover", index: b.value.index };
      case "cancel":
        if (this.stopped) return { kind: "ignored" };
        this.stopped = { kind: "cancel" };
        this.phase = "stopping";
        return { kind: "cancel", code: b.value.code };
      case "kvCredit":
        this.kvCredit += b.value.bytes;
        return { kind: "credit", bytes: b.value.bytes };
      case "kvAbort":
        // Ends the KV transfer only; the tokens go on (PDD-KV-019).
        return { kind: "kv-abort", code: b.value.code };
      case "progress":
        return { kind: "progress" };
      default:
        return { kind: "ignored" };
    }
  }
}
