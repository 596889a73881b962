import { defineConfig } from "vitest/config";

/**
 * The hostile-peer suite (`npm run test:hostile`): files named *.hostile.ts,
 * one at a time (each starts its own peers as child processes and measures
 * their memory, so they must not share the CPU with each other). Tests
 * tagged `quick` are the subset proposed for `npm test`
 * (`npm run test:hostile -- --tags-filter=quick`).
 */
export default defineConfig({
  test: {
    root: new URL("..", import.meta.url).pathname,
    include: ["hostile/**/*.hostile.ts"],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
    tags: [{ name: "quick", description: "fast and deterministic: proposed for npm test" }],
  },
});
