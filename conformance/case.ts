/** A conformance case and its result (style: {requirement, status, details, frame log}). */
import type { Probe } from "./probe.js";
import type { ModelOracle } from "./oracle.js";
import type { RawSession } from "./raw-client.js";

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
  /** The bindings the case is about (default: every binding). */
  transports?: ("websocket" | "grpc" | "webtransport")[];
  /** Device role: the case also checks the answer the device displayed (observable with --exec only). */
  answer?: boolean;
  run(probe: Probe, env: CaseEnv): Promise<void>;
}

/** How a device run ended: its exit status and its displayed answer (stdout, one trailing newline removed). */
export interface DeviceOutcome {
  exitCode: number;
  text: string;
  stderr: string;
}

/** The cloud under test, for cases about the binding itself. */
export interface Target {
  url: string;
  transport: "websocket" | "grpc" | "webtransport";
  codec: "proto" | "msgpack";
  /** The credential the suite was given (--token), if any. */
  token?: string;
  /** Opens a raw session with other credentials, subprotocols or codec parameter; throws `Refused` on an HTTP refusal. */
  raw(o: {
    token?: string | null;
    protocols?: string[];
    codecParam?: string;
    /** WebTransport: open the session without its control stream. */
    noControl?: boolean;
  }): Promise<RawSession>;
  /** gRPC: the response headers of a Session call that sends `frame` with this grpc-accept-encoding. */
  grpcHeaders?(frame: Uint8Array, acceptEncoding: string): Promise<Record<string, string | string[] | undefined>>;
  /** gRPC: one raw call with this path, content type and grpc-encoding, and how it ended within `waitMs`. */
  grpcCall?(
    frame: Uint8Array,
    o: { path: string; contentType: string; encoding?: string; waitMs: number },
  ): Promise<import("./raw-client.js").GrpcCallEnd>;
}

export interface CaseEnv {
  /** Cloud role: a fresh, unrelated session to the same peer (for cases that need two). */
  open(): Promise<Probe>;
  /** Cloud role: the target, for binding-level cases. */
  target: Target;
  /** The GGUF file the peer under test serves (--model), to check its fingerprints. */
  modelFile?: string;
  /** Device role: waits for the device run to end; undefined when its answer is not observable (--listen). */
  outcome(): Promise<DeviceOutcome | undefined>;
  /** Device role: the suite's own copy of the device's model (--model), to know the answer a device must show. */
  oracle?: ModelOracle;
  /** Device role: another run of the device, on a new connection (for a baseline). */
  again(): Promise<{ probe: Probe; outcome(): Promise<DeviceOutcome | undefined> }>;
}
export type DeviceCaseEnv = CaseEnv;

/** "wire-only": a device case whose answer check could not run (--listen); its wire checks passed. */
export type Status = "pass" | "fail" | "not-offered" | "wire-only";

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
