/** A conformance case and its result (style: {requirement, status, details, frame log}). */
import type { Probe } from "./probe.js";

export type Role = "cloud" | "device";
export type Feature = "kv" | "refinement" | "msgpack";

export interface Case {
  id: string;
  title: string;
  role: Role;
  /** The requirement IDs this case checks. */
  requirements: string[];
  /** Optional features the case needs; the peer's HelloAck says whether it offers them. */
  needs?: Feature[];
  /** The codecs the case is about (default: every codec). It does not run under the others. */
  codecs?: ("proto" | "msgpack")[];
  run(probe: Probe, env: CaseEnv): Promise<void>;
}

export interface CaseEnv {
  /** A fresh, unrelated session to the same peer (for cases that need two). */
  open(): Promise<Probe>;
}

export type Status = "pass" | "fail" | "not-offered";

export interface CaseResult {
  id: string;
  title: string;
  requirements: string[];
  transport: string;
  codec: string;
  status: Status;
  details: string;
  ms: number;
  log: string[];
}
