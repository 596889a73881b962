/**
 * Fuzzing the reference device listening on WebSocket, both codecs: the
 * suite plays the cloud and mutates its frames, FUZZ_CASES (2,000 in `npm
 * test`; PDD_FUZZ_CASES for long runs), 100 per device run; every run must
 * still end with an answer (test/fuzz-suites.ts). The same over gRPC and
 * WebTransport is fuzz-device-bindings.test.ts (`npm run test:matrix`); the
 * cloud's share is fuzz-cloud.test.ts.
 */
import { FUZZ_CASES, FUZZ_CASES_MSGPACK } from "./test/fuzz-share.js";
import { describeDeviceFuzz } from "./test/fuzz-suites.js";

describeDeviceFuzz([
  ["ws://127.0.0.1:0", "proto", FUZZ_CASES],
  ["ws://127.0.0.1:0", "msgpack", FUZZ_CASES_MSGPACK],
]);
