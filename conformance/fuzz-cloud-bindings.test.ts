/**
 * Fuzzing a live reference cloud over gRPC and WebTransport: the cases
 * fuzz-cloud.test.ts runs over WebSocket, repeated over the other bindings
 * (`npm run test:matrix`, vitest.matrix.ts).
 */
import { FUZZ_CASES } from "./test/fuzz-share.js";
import { describeCloudFuzz } from "./test/fuzz-suites.js";

describeCloudFuzz(
  [
    ["grpc", "proto", FUZZ_CASES],
    ["webtransport", "proto", FUZZ_CASES],
  ],
  { corpus: false },
);
