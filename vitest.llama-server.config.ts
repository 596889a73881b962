import { defineConfig } from "vitest/config";

/**
 * `npm run test:llama-server`: the reference cloud on real llama-server
 * processes (reference-cloud/test/llama-server.integration.ts), and its
 * OpenAI endpoint as a token-ID backend (llama-server-openai.integration.ts). Not part of
 * `npm test`: it needs the binary `npm run build:llama-server` builds (about
 * 9 minutes on 2 cores, once per llama.cpp version).
 */
export default defineConfig({
  test: {
    include: [
      "reference-cloud/test/llama-server.integration.ts",
      "reference-cloud/test/llama-server-openai.integration.ts",
    ],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
  },
});
