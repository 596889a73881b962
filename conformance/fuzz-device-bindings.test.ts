/**
 * Fuzzing the reference device listening on gRPC and WebTransport: the cases
 * fuzz-device.test.ts runs over WebSocket, repeated over the other bindings
 * (`npm run test:matrix`, vitest.matrix.ts).
 */
import { FUZZ_CASES } from "./test/fuzz-share.js";
import { describeDeviceFuzz } from "./test/fuzz-suites.js";

describeDeviceFuzz([
  ["grpc://127.0.0.1:0", "proto", FUZZ_CASES],
  ["https://127.0.0.1:0/pdd/v1", "proto", FUZZ_CASES],
]);
