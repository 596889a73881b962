import { defineConfig } from "vitest/config";

/**
 * The hostile-peer suite (`npm run test:hostile`): files named *.hostile.ts,
 * one at a time (each starts its own peers as child processes and measures
 * their memory, so they must not share the CPU with each other). Tests
 * tagged `quick` are the representative subset: `npm test` runs those of
 * hostile/cloud, hostile/kv and device/serve (`npm run test:hostile:quick`);
 * `.ci/run` runs every device case once, over ws/proto.
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
