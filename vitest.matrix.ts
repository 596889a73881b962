/**
 * The conformance and fuzz runs that repeat every case over every binding and
 * codec, or wait out the spec's 10 s timers: 190 s of the suite's CPU on 2
 * cores, and the fuzzing over gRPC and WebTransport and MessagePack over
 * WebTransport about 85 s more of its workers' time (42 s and 45 s in one
 * run with three workers). They run in CI (`npm run test:matrix`, .ci/run)
 * rather than in `npm test`, which keeps one run of each role
 * (conformance-cloud, conformance-device, conformance-1-1,
 * conformance-mutants) over every binding, every codec over WebSocket, and
 * the fuzzing over WebSocket, and stays near two minutes.
 */
export const MATRIX_FILES = [
  "conformance/conformance-cloud-bindings.test.ts",
  "conformance/conformance-device-bindings.test.ts",
  "conformance/fuzz-cloud-bindings.test.ts",
  "conformance/fuzz-device-bindings.test.ts",
  "conformance/conformance-device-1-1-conn.test.ts",
  "conformance/conformance-device-kv.test.ts",
  "conformance/conformance-1-1-kv.test.ts",
  "conformance/conformance-1-1-conn.test.ts",
  "conformance/conformance-small-context.test.ts",
  "conformance/conformance-tok.test.ts",
];
