/** Prometheus metrics of `pdd device serve` (prom-client, its own registry), served at /metrics. @internal */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Report } from "./run.js";

export function createServeMetrics(state: { active(): number; queued(): number; sequencesBusy(): number }) {
  const registry = new Registry();
  return {
    registry,
    requests: new Counter({
      name: "pdd_serve_requests_total",
      help: "HTTP requests, by route and status",
      labelNames: ["route", "status"] as const,
      registers: [registry],
    }),
    outcomes: new Counter({
      name: "pdd_serve_generations_total",
      help: "Generations by how they ended: stop, length, cancelled (client gone), error",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    tokens: new Counter({
      name: "pdd_serve_tokens_total",
      help: "Answer tokens, by who produced them (cloud or device)",
      labelNames: ["source"] as const,
      registers: [registry],
    }),
    promptTokens: new Counter({ name: "pdd_serve_prompt_tokens_total", help: "Prompt tokens", registers: [registry] }),
    fallbacks: new Counter({
      name: "pdd_serve_fallbacks_total",
      help: "Answers the device finished alone after the cloud failed",
      registers: [registry],
    }),
    ttft: new Histogram({
      name: "pdd_serve_ttft_seconds",
      help: "Time from admission to the first answer token",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    tpot: new Histogram({
      name: "pdd_serve_tpot_seconds",
      help: "Median time per output token of each answer",
      buckets: [0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5],
      registers: [registry],
    }),
    active: new Gauge({
      name: "pdd_serve_requests_active",
      help: "Requests generating now",
      registers: [registry],
      collect() {
        this.set(state.active());
      },
    }),
    queued: new Gauge({
      name: "pdd_serve_queue_depth",
      help: "Requests waiting for a sequence",
      registers: [registry],
      collect() {
        this.set(state.queued());
      },
    }),
    sequences: new Gauge({
      name: "pdd_serve_sequences_busy",
      help: "Device sequences in use",
      registers: [registry],
      collect() {
        this.set(state.sequencesBusy());
      },
    }),
  };
}

export type ServeMetrics = ReturnType<typeof createServeMetrics>;

/** Counts one finished generation. */
export function observeReport(m: ServeMetrics, r: Report, promptTokens: number): void {
  m.tokens.inc({ source: "cloud" }, r.cloudTokens);
  m.tokens.inc({ source: "device" }, r.deviceTokens);
  m.promptTokens.inc(promptTokens);
  if (r.mode === "fallback") m.fallbacks.inc();
  if (r.cloudTokens + r.deviceTokens > 0) m.ttft.observe(r.ttftMs / 1000);
  if (r.cloudTokens + r.deviceTokens > 1) m.tpot.observe(r.tpotMs.p50 / 1000);
}
