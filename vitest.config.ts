import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";
import { MATRIX_FILES } from "./vitest.matrix.js";

/**
 * The files that take longest (measured on 2 cores), slowest first. They start
 * first so that the last file to finish is a short one and both cores stay
 * busy to the end; every other file follows in vitest's own order. A new test
 * file that takes more than a few seconds belongs in this list.
 */
const SLOWEST_FIRST = [
  "transports/transports.test.ts",
  "reference-device/pd.test.ts",
  "conformance/fuzz-cloud.test.ts",
  "conformance/conformance-cloud.test.ts",
  "conformance/conformance-device.test.ts",
  "conformance/conformance-device-kv.test.ts",
  "conformance/conformance-small-context.test.ts",
  "conformance/fuzz-device.test.ts",
  "reference-device/interop.test.ts",
  "reference-device/fallback.test.ts",
  "reference-device/sim-peers.test.ts",
  "proto/codec/fuzz.test.ts",
  "conformance/conformance-mutants.test.ts",
  "cli/cli.test.ts",
  "proto/codec/hot-path.test.ts",
];

class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = SLOWEST_FIRST.findIndex((suffix) => f.moduleId.endsWith(suffix));
      return i < 0 ? SLOWEST_FIRST.length : i;
    };
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    // .stryker-tmp: the sandboxes of a mutation run (npm run test:mutation) in progress.
    // The binding-matrix conformance runs are npm run test:matrix's (vitest.matrix.ts), in CI.
    exclude: ["node_modules/**", "dist/**", ".stryker-tmp/**", ...MATRIX_FILES],
    // Hang detectors, not speed checks: beside two busy processes (npm run test:stress) the
    // heaviest tests (conformance over WebTransport: 18 s unloaded) take 3-4x as long.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    // Most files wait on sockets and timers more than they compute: three workers keep two cores busy.
    maxWorkers: 3,
    // A worker runs file after file in one process: node-llama-cpp, the codecs and the bindings load
    // once per worker, not once per file (25 s of CPU over the suite). Every file closes what it starts.
    isolate: false,
    sequence: { sequencer: SlowestFirst },
  },
});
