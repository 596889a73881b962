/** What every connection of one cloud shares. @internal */
import type { InferenceEngine } from "../engine/index.js";
import type { CloudConfig } from "./config.js";
import type { Logger } from "./log.js";
import type { CloudMetrics } from "./metrics.js";
import type { Admission } from "./scheduler.js";

export interface CloudContext {
  engine: InferenceEngine;
  admission: Admission;
  config: CloudConfig;
  metrics: CloudMetrics;
  log: Logger;
  /** Whether a credential may use this cloud; undefined = no authentication configured. */
  authorize?: (token: string | undefined) => boolean;
  /** The concurrent-request limit of an authorized credential, if its key has one. */
  keyLimit: (token: string | undefined) => number | undefined;
  /** Live requests per credential, across connections. */
  liveByKey: Map<string, number>;
  /** True once the cloud is shutting down: new requests get UNAVAILABLE. */
  draining: () => boolean;
  serverName: string;
  /** The highest 1.x minor this cloud negotiates (PROTOCOL_MINOR unless startCloud's options say less or more). */
  protocolMinor: number;
  /** Every connection past its transport's accept: a key reload asks each to check its credential again. */
  connections: Set<{ recheckCredential(): void }>;
  /** Every request not yet ended, across connections (for shutdown). */
  requests: Set<{
    halt(reason: { kind: "error"; error: import("../proto/index.js").PddError }): void;
    done: Promise<void>;
  }>;
}
