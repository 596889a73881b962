import { defineConfig } from "vitest/config";

/**
 * The tests Stryker runs for each mutant of the protocol core (stryker.config.json):
 * the proto/ unit tests only, without the toolchain check (buf, protoc), which
 * no mutant of the TypeScript sources can change, and without the codec fuzz
 * test: it checks only that errors are typed, and instrumented for Stryker its
 * 100,000 frames take more than a minute per mutant it covers.
 */
export default defineConfig({
  test: {
    include: ["proto/**/*.test.ts"],
    exclude: ["node_modules/**", "dist/**", "proto/toolchain.test.ts", "proto/codec/fuzz.test.ts"],
    testTimeout: 60_000,
  },
});
