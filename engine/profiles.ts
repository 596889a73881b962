/**
 * Timing profiles for the simulated engine and the trace simulation, from
 * published measurements (cited on each). Rates are tokens per second of one
 * sequence. `model` names the model the measurement ran: two profiles of the
 * same model are the same model to the protocol (KV images are exchangeable).
 */
export interface Profile {
  name: string;
  model: string;
  prefillTokPerS: number;
  decodeTokPerS: number;
  /** f16 K+V bytes per position of `model` (layers × 2 × kv-heads × head-dim × 2). */
  kvBytesPerToken: number;
  /** Where the numbers come from. */
  source: string;
}

/**
 * A phone-class device: TinyLlama 1.1B Q4_K_M on the CPU of a Qualcomm
 * QCS8550 (the Snapdragon 8 Gen 2 silicon), llama-bench 8 threads:
 * pp512 194.49 t/s, tg128 38.81 t/s. TinyLlama: 22 layers, 4 KV heads of 64.
 */
export const PHONE: Profile = {
  name: "phone (QCS8550 CPU, 1.1B Q4_K_M)",
  model: "TinyLlama-1.1B",
  prefillTokPerS: 194.49,
  decodeTokPerS: 38.81,
  kvBytesPerToken: 22 * 2 * 4 * 64 * 2,
  source: "geerlingguy/ai-benchmarks issue #54 (Radxa Dragon Q8B, 2026-09-22)",
};

/**
 * A phone with its NPU: Qwen3 1.7B W4A16KV8 on the Hexagon NPU of a
 * Snapdragon 8 Gen 3 (SM8650) with mllm's QNN ahead-of-time runtime, 640
 * prefill and 128 decode tokens: 758.28 t/s prefill, 25.84 t/s decode.
 * Qwen3-1.7B: 28 layers, 8 KV heads of 128.
 */
export const PHONE_NPU: Profile = {
  name: "phone NPU (SM8650 Hexagon, Qwen3 1.7B W4A16)",
  model: "Qwen3-1.7B",
  prefillTokPerS: 758.28,
  decodeTokPerS: 25.84,
  kvBytesPerToken: 28 * 2 * 8 * 128 * 2,
  source: "mllm QNN AOT announcement, chenghuawang.github.io/News/2026-01-29-mllm-qnn-aot-support-en",
};

/**
 * A cloud GPU: Llama 3 8B Q6 on an RTX 4090 with llama.cpp server:
 * prompt evaluation 4668 t/s, generation 93 t/s. Llama 3 8B: 32 layers,
 * 8 KV heads of 128.
 */
export const CLOUD_GPU: Profile = {
  name: "cloud GPU (RTX 4090, 8B Q6)",
  model: "Llama-3-8B",
  prefillTokPerS: 4668,
  decodeTokPerS: 93,
  kvBytesPerToken: 32 * 2 * 8 * 128 * 2,
  source: "dmatora/LLM-inference-speed-benchmarks issue #10 (2024-05-27)",
};

/**
 * Not a measurement: an engine as fast as the event loop allows, for soak
 * runs whose subject is the protocol and the peers, not inference time.
 */
export const INSTANT: Profile = {
  name: "instant (no inference time)",
  model: "instant",
  prefillTokPerS: 1e9,
  decodeTokPerS: 1e9,
  kvBytesPerToken: 16,
  source: "synthetic",
};

export const PROFILES: Record<string, Profile> = {
  phone: PHONE,
  "phone-npu": PHONE_NPU,
  "cloud-gpu": CLOUD_GPU,
  instant: INSTANT,
};
