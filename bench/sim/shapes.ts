/**
 * Synthetic request traces of shapes the conversation trace does not have,
 * so the planner is checked on more than the one trace it was built beside.
 * Lengths are log-normal, set by a median and a 90th percentile; arrivals are
 * Poisson, or in bursts. Deterministic for a seed.
 */
import { prng } from "../../shared/index.js";
import type { TraceRequest } from "./trace.js";

export interface Shape {
  name: string;
  /** What it stands for. */
  about: string;
  prompt: { p50: number; p90: number; max: number };
  answer: { p50: number; p90: number; max: number };
  /** Mean requests per second. */
  ratePerS: number;
  /** Requests arrive in bursts of this many within `burstMs` (1: Poisson). */
  burst: number;
  burstMs: number;
}

export const SHAPES: Shape[] = [
  {
    name: "long-prompt-short-answer",
    about: "retrieval and code-completion style: prompt p50 1,500 / p90 5,200, answer p50 13 / p90 55 tokens",
    prompt: { p50: 1500, p90: 5200, max: 16_000 },
    answer: { p50: 13, p90: 55, max: 400 },
    ratePerS: 3,
    burst: 1,
    burstMs: 0,
  },
  {
    name: "short-prompt-long-answer",
    about: "generation style: prompt p50 120 / p90 500, answer p50 500 / p90 1,200 tokens",
    prompt: { p50: 120, p90: 500, max: 4000 },
    answer: { p50: 500, p90: 1200, max: 4000 },
    ratePerS: 1,
    burst: 1,
    burstMs: 0,
  },
  {
    name: "bursty",
    about:
      "conversation-like lengths (prompt p50 1,000 / p90 3,000, answer p50 200 / p90 450) arriving 40 at a time within 1 s",
    prompt: { p50: 1000, p90: 3000, max: 12_000 },
    answer: { p50: 200, p90: 450, max: 2000 },
    ratePerS: 2,
    burst: 40,
    burstMs: 1000,
  },
];

/** A standard normal draw (Box–Muller). */
function normal(rand: () => number): number {
  const u = Math.max(1e-12, rand());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** A log-normal length with the given median and 90th percentile, clipped to [1, max]. */
function length(rand: () => number, d: Shape["prompt"]): number {
  const sigma = Math.log(d.p90 / d.p50) / 1.2816;
  return Math.min(d.max, Math.max(1, Math.round(d.p50 * Math.exp(sigma * normal(rand)))));
}

export function synthesize(shape: Shape, requests: number, seed = 1): TraceRequest[] {
  const rand = prng(seed);
  const out: TraceRequest[] = [];
  let t = 0;
  const gapMs = (1000 * shape.burst) / shape.ratePerS; // between burst starts (or single arrivals)
  while (out.length < requests) {
    t += -Math.log(Math.max(1e-12, rand())) * gapMs;
    for (let b = 0; b < shape.burst && out.length < requests; b++)
      out.push({
        atMs: t + rand() * shape.burstMs,
        promptTokens: length(rand, shape.prompt),
        answerTokens: length(rand, shape.answer),
      });
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}
