/** `pdd plan`: the planner's choice for one request (budget, pacing, refinement, KV), with its predictions. */
import { CLOUD_GPU, PHONE } from "../engine/index.js";
import { DEFAULT_TARGET_TPOT_MS, plan } from "../reference-device/index.js";
import { intFlag, numFlag, parseFlags, UsageError, type Run } from "./kit.js";

export const PLAN_FLAGS = {
  "prompt-tokens": { type: "string" },
  "answer-tokens": { type: "string" },
  "rtt-ms": { type: "string" },
  "bandwidth-mbps": { type: "string" },
  "cloud-queue-ms": { type: "string" },
  "cloud-prefill": { type: "string" },
  "cloud-decode": { type: "string" },
  "device-prefill": { type: "string" },
  "device-decode": { type: "string" },
  "tpot-ms": { type: "string" },
  "max-budget": { type: "string" },
  "kv-bytes-per-token": { type: "string" },
  "refine-min-ratio": { type: "string" },
  explain: { type: "boolean" },
  json: { type: "boolean" },
} as const;

export const runPlan: Run = async (argv, io) => {
  const { values } = parseFlags(argv, PLAN_FLAGS);
  if (values["prompt-tokens"] === undefined) throw new UsageError("--prompt-tokens N is required");
  const kvBytes = numFlag("kv-bytes-per-token", values["kv-bytes-per-token"], 0, true);
  const minRatio = numFlag("refine-min-ratio", values["refine-min-ratio"], 1);
  if (minRatio > 1) throw new UsageError("--refine-min-ratio must be in (0, 1]");
  const p = plan({
    promptTokens: intFlag("prompt-tokens", values["prompt-tokens"], 0, 1, 10_000_000),
    answerTokens: intFlag("answer-tokens", values["answer-tokens"], 256, 1, 10_000_000),
    rttMs: numFlag("rtt-ms", values["rtt-ms"], 50, true),
    bandwidthMbps: numFlag("bandwidth-mbps", values["bandwidth-mbps"], 100),
    cloud: {
      queueMs: numFlag("cloud-queue-ms", values["cloud-queue-ms"], 0, true),
      prefillTokPerS: numFlag("cloud-prefill", values["cloud-prefill"], CLOUD_GPU.prefillTokPerS),
      decodeTokPerS: numFlag("cloud-decode", values["cloud-decode"], CLOUD_GPU.decodeTokPerS),
    },
    device: {
      prefillTokPerS: numFlag("device-prefill", values["device-prefill"], PHONE.prefillTokPerS),
      decodeTokPerS: numFlag("device-decode", values["device-decode"], PHONE.decodeTokPerS),
    },
    targetTpotMs: numFlag("tpot-ms", values["tpot-ms"], DEFAULT_TARGET_TPOT_MS),
    budget: { max: intFlag("max-budget", values["max-budget"], 256, 1, 1 << 20) },
    kv: { allowed: kvBytes > 0, bytesPerToken: kvBytes },
    refine: { allowed: minRatio < 1, minRatio },
  });
  if (values.json) {
    io.log(JSON.stringify(p, null, 2));
    return 0;
  }
  const c = p.chosen;
  io.log(
    `mode ${p.mode}; ${c.kv ? "KV transfer" : "recompute"}; refinement ratio ${c.ratio}; cloud ` +
      `budget ${c.budget} tokens; display every ${p.pacing.intervalMs} ms; takeover at token ${c.takeoverIndex}`,
  );
  io.log(
    `predicted: TTFT ${c.ttftMs} ms (device alone ${Math.round(p.deviceOnly.ttftMs)} ms), max TPOT ` +
      `${c.maxTpotMs} ms, cloud time ${c.cloudCostMs} ms (cloud alone ${Math.round(p.cloudOnly.cloudCostMs)} ` +
      `ms)`,
  );
  if (values.explain) io.log(`\n${p.explanation.join("\n")}`);
  return 0;
};
