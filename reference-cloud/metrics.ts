/** Prometheus metrics of the reference cloud (prom-client, its own registry). */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BackendStatus } from "../engine/index.js";

export function createCloudMetrics() {
  const registry = new Registry();
  const m = {
    registry,
    connections: new Gauge({ name: "pdd_connections", help: "Open PDD connections", registers: [registry] }),
    requests: new Counter({
      name: "pdd_requests_total",
      help: "Requests by how they ended",
      labelNames: ["end"] as const,
      registers: [registry],
    }),
    activeSequences: new Gauge({
      name: "pdd_sequences_active",
      help: "Admission slots held: requests admitted and not yet freed",
      registers: [registry],
    }),
    engineBusy: new Gauge({
      name: "pdd_engine_sequences_busy",
      help: "Engine sequences holding a request's state (engine occupancy, apart from admission)",
      registers: [registry],
    }),
    sequencesFreed: new Counter({
      name: "pdd_sequences_freed_total",
      help: "Sequences released, by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    queueDepth: new Gauge({ name: "pdd_queue_depth", help: "Requests waiting for a sequence", registers: [registry] }),
    promptTokens: new Counter({
      name: "pdd_prompt_tokens_total",
      help: "Prompt tokens prefilled",
      registers: [registry],
    }),
    decodedTokens: new Counter({
      name: "pdd_decoded_tokens_total",
      help: "Tokens decoded by the cloud",
      registers: [registry],
    }),
    sentTokens: new Counter({ name: "pdd_sent_tokens_total", help: "Tokens sent to devices", registers: [registry] }),
    kvBytes: new Counter({ name: "pdd_kv_bytes_sent_total", help: "KV bytes sent", registers: [registry] }),
    errors: new Counter({
      name: "pdd_errors_total",
      help: "Errors sent, by code",
      labelNames: ["code"] as const,
      registers: [registry],
    }),
    firstToken: new Histogram({
      name: "pdd_first_token_seconds",
      help: "Time from PrefillRequest to FirstToken at the cloud",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
  return m;
}

export type CloudMetrics = ReturnType<typeof createCloudMetrics>;

/** Per-backend gauges, read from the engine at each scrape: whether it is in rotation, its load, its failures. */
export function registerBackendMetrics(m: CloudMetrics, backends: () => BackendStatus[]): void {
  const gauge = (name: string, help: string, value: (b: BackendStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["backend"] as const,
      registers: [m.registry],
      collect() {
        for (const b of backends()) this.set({ backend: b.url }, value(b));
      },
    });
  gauge("pdd_backend_up", "1 while the backend is in rotation (its /health answers)", (b) => (b.healthy ? 1 : 0));
  gauge("pdd_backend_slots", "Slots the backend has", (b) => b.slots);
  gauge("pdd_backend_requests_active", "This cloud's requests on the backend", (b) => b.active);
  gauge("pdd_backend_slots_busy", "Slots the backend reported decoding (any client's)", (b) => b.reportedBusy);
  gauge("pdd_backend_failures", "Times the backend was taken out of rotation", (b) => b.failures);
}
