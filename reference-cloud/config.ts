/**
 * The reference cloud's settings, from flags or a JSON config file, validated
 * with zod. Defaults follow spec §11.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { z } from "zod";

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}$/, "expected HOST:PORT");

export const CloudConfigSchema = z
  .object({
    model: z.string().min(1).optional(),
    /** What runs inference: node-llama-cpp in this process, or llama-server processes over HTTP (`backends`). */
    engine: z.enum(["llama-cpp", "llama-server"]).default("llama-cpp"),
    /** llama-server base URLs (engine "llama-server"). */
    backends: z.array(z.string().min(1)).optional(),
    /** engine "llama-server": generation over llama-server's /completion, or OpenAI's /v1/completions (vLLM's API). */
    backendApi: z.enum(["native", "openai"]).optional(),
    /** This machine's path of the backends' --slot-save-path (a shared filesystem): KV images by slot save. */
    slotSaveDir: z.string().min(1).optional(),
    /** engine "llama-server": a small GGUF with the served model's tokenizer that scores prompts for refinement. */
    refineModel: z.string().min(1).optional(),
    listen: z
      .object({
        ws: hostPort.optional(),
        grpc: hostPort.optional(),
        webtransport: hostPort.optional(),
      })
      .strict()
      .default({ ws: "127.0.0.1:4100", grpc: "127.0.0.1:4101", webtransport: "127.0.0.1:4102" }),
    tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
    threads: z.number().int().min(1).max(256).optional(),
    /** Concurrent sequences: requests decoding at once. */
    sequences: z.number().int().min(1).max(256).default(4),
    /** Requests that may wait for a sequence; beyond that, RESOURCE_EXHAUSTED. */
    queueLimit: z.number().int().min(0).max(100_000).default(64),
    contextSize: z
      .number()
      .int()
      .min(64)
      .max(1 << 20)
      .optional(),
    /**
     * How fast the cloud sends answer tokens, in multiples of the device's
     * display rate (target_tpot_us). 2: ahead of the display without decoding
     * tokens a takeover would discard — right when decoding competes for a CPU.
     * 0: as fast as it decodes, freeing the sequence soonest — right for a
     * batching GPU, and what the planner's cloud-cost model assumes.
     */
    decodePace: z.number().min(0).max(100).default(2),
    limits: z
      .object({
        maxFrameBytes: z
          .number()
          .int()
          .min(65_536) // PDD-MSG-012
          .max(1 << 30)
          .default(4 << 20),
        maxPromptTokens: z.number().int().min(1).optional(),
        maxConcurrentRequests: z.number().int().min(1).max(10_000).default(8),
        maxCloudTokenBudget: z.number().int().min(1).default(256),
        maxKvChunkBytes: z
          .number()
          .int()
          .min(4096) // PDD-KV-014
          .max(1 << 30)
          .default(1 << 20),
        handshakeTimeoutMs: z.number().int().min(100).default(10_000),
        idleTimeoutMs: z.number().int().min(100).default(60_000),
        maxRequestDurationMs: z.number().int().min(100).default(600_000),
      })
      .strict()
      .prefault({}),
    /** A file of API keys, one per line ("key" or "key max_concurrent"); reloaded on SIGHUP. */
    keysFile: z.string().optional(),
    metricsPort: z.number().int().min(0).max(65_535).optional(),
    logLevel: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
    /** Seconds to let requests finish on shutdown before they are ended. */
    drainSeconds: z.number().min(0).max(3600).default(30),
  })
  .strict();

export type CloudConfig = z.infer<typeof CloudConfigSchema>;
export type CloudConfigInput = z.input<typeof CloudConfigSchema>;

export function parseCloudConfig(input: unknown, where = "config"): CloudConfig {
  const r = CloudConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new Error(`${where}: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  return r.data;
}

export function loadCloudConfigFile(path: string): CloudConfigInput {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let input: CloudConfigInput;
  try {
    input = JSON.parse(text) as CloudConfigInput;
  } catch (e) {
    throw new Error(`config file ${path} is not JSON: ${(e as Error).message}`);
  }
  return withPemFiles(input, dirname(path));
}

/**
 * tls.cert and tls.key as a deployer writes them: PEM text, or a file's path
 * (relative to the config file), as --tls-cert and --tls-key take (issue 16:
 * a path was taken for PEM text).
 */
function withPemFiles(input: CloudConfigInput, dir: string): CloudConfigInput {
  const tls = input?.tls;
  if (typeof tls !== "object" || tls === null) return input;
  const pem = (field: "cert" | "key"): string => {
    const v = tls[field];
    if (typeof v !== "string" || v.includes("-----BEGIN")) return v;
    const file = resolve(dir, v);
    try {
      return readFileSync(file, "utf8");
    } catch (e) {
      throw new Error(`config: tls.${field}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  return { ...input, tls: { cert: pem("cert"), key: pem("key") } };
}
