/**
 * Timing profiles for the simulation, from published llama.cpp measurements.
 * Rates are tokens per second of one sequence.
 */
export interface Profile {
  name: string;
  prefillTokPerS: number;
  decodeTokPerS: number;
  /** Where the numbers come from. */
  source: string;
}

/**
 * A phone-class device: TinyLlama 1.1B Q4_K_M on the CPU of a Qualcomm
 * QCS8550 (the Snapdragon 8 Gen 2 silicon), llama-bench 8 threads:
 * pp512 194.49 t/s, tg128 38.81 t/s.
 */
export const PHONE: Profile = {
  name: "phone (QCS8550 CPU, 1.1B Q4_K_M)",
  prefillTokPerS: 194.49,
  decodeTokPerS: 38.81,
  source: "geerlingguy/ai-benchmarks issue #54 (Radxa Dragon Q8B, 2026-09-22)",
};

/**
 * A cloud GPU: Llama 3 8B Q6 on an RTX 4090 with llama.cpp server:
 * prompt evaluation 4668 t/s, generation 93 t/s.
 */
export const CLOUD_GPU: Profile = {
  name: "cloud GPU (RTX 4090, 8B Q6)",
  prefillTokPerS: 4668,
  decodeTokPerS: 93,
  source: "dmatora/LLM-inference-speed-benchmarks issue #10 (2024-05-27)",
};
