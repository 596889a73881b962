/**
 * The conformance runs that repeat every case over every binding and codec, or
 * wait out the spec's 10 s timers: 190 s of the suite's CPU on 2 cores. They
 * run in CI (`npm run test:matrix`, .ci/run) rather than in `npm test`, which
 * keeps one run of each role (conformance-cloud, conformance-device,
 * conformance-1-1, conformance-mutants) and stays near two minutes.
 */
export const MATRIX_FILES = [
  "conformance/conformance-device-1-1-conn.test.ts",
  "conformance/conformance-device-kv.test.ts",
  "conformance/conformance-1-1-kv.test.ts",
  "conformance/conformance-1-1-conn.test.ts",
  "conformance/conformance-small-context.test.ts",
  "conformance/conformance-tok.test.ts",
];
