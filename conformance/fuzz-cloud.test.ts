/**
 * Fuzzing a live reference cloud over WebSocket, both codecs: FUZZ_CASES
 * mutated cases (2,000 in `npm test`; PDD_FUZZ_CASES for long runs), and
 * every corpus input replayed over every binding (test/fuzz-suites.ts). The
 * same fuzzing over gRPC and WebTransport is fuzz-cloud-bindings.test.ts
 * (`npm run test:matrix`); the device's share is fuzz-device.test.ts.
 */
import { FUZZ_CASES, FUZZ_CASES_MSGPACK } from "./test/fuzz-share.js";
import { describeCloudFuzz } from "./test/fuzz-suites.js";

describeCloudFuzz(
  [
    ["ws", "proto", FUZZ_CASES],
    ["ws", "msgpack", FUZZ_CASES_MSGPACK],
  ],
  { corpus: true },
);
