import { defineConfig } from "vitest/config";

/** `npm run test:pack`: the packed package (examples/pack.check.ts), apart from `npm test` because it builds. */
export default defineConfig({
  test: {
    include: ["examples/pack.check.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: "forks",
  },
});
