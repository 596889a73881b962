/**
 * Fuzzing the reference device over every binding: the suite plays the cloud
 * and mutates its frames, FUZZ_CASES per binding (2,000 in `npm test`;
 * PDD_FUZZ_CASES for long runs), 100 per device run; every run must still
 * end with an answer. The cloud's share is fuzz-cloud.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { fuzzDevice } from "./fuzz.js";
import { FUZZ_CASES, FUZZ_CASES_MSGPACK, FUZZ_TIMEOUT_MS } from "./test/fuzz-share.js";
import { inProcessDevice } from "./test/in-process-device.js";
import type { Codec } from "./wire.js";

let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: ensureDefaultModel("tiny"), threads: 1, sequences: 4 });
});
afterAll(async () => {
  await engine.close();
});

describe("fuzzing the reference device", () => {
  it.each([
    ["ws://127.0.0.1:0", "proto", FUZZ_CASES],
    ["ws://127.0.0.1:0", "msgpack", FUZZ_CASES_MSGPACK],
    ["grpc://127.0.0.1:0", "proto", FUZZ_CASES],
    ["https://127.0.0.1:0/pdd/v1", "proto", FUZZ_CASES],
  ] as const)(
    "listening on %s (%s): %i mutated cloud frames, every run ends with an answer",
    async (listen, codec, cases) => {
      const r = await fuzzDevice({
        listen,
        codec: codec as Codec,
        launcher: inProcessDevice(engine),
        cases,
        seed: 20261129,
        framesPerRun: 100,
      });
      expect(r.cases).toBe(cases);
      expect(r.runs).toBe(cases / 100);
    },
    FUZZ_TIMEOUT_MS,
  );
});
