/**
 * 100,000 random and mutated frames per codec: every decode either yields a
 * message or throws a PddError with a registry code. Anything else (a
 * TypeError, a RangeError, a hang) fails the test.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema } from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode, PddError } from "../errors.js";
import { FrameDecoder } from "../framing.js";
import { mutator } from "../../conformance/mutator.js"; // a test may reach into another layer (see layers.test.ts)
import { prng } from "../../shared/index.js";
import { cloudSamples, deviceSamples } from "../test/samples.js";
import { createCodec, CODEC_NAMES } from "./index.js";

const CASES = 100_000;
const allowed = new Set([ErrorCode.MALFORMED_FRAME, ErrorCode.FRAME_TOO_LARGE]);

describe.each(CODEC_NAMES)("%s decoder under fuzzing", (name) => {
  it(`gives only typed errors for ${CASES.toLocaleString("en")} random and mutated frames`, () => {
    const codec = createCodec(name, { maxFrameBytes: 1 << 16 });
    const schemas: DescMessage[] = [DeviceFrameSchema, CloudFrameSchema];
    const corpus = [
      ...deviceSamples().map((m) => codec.encode(DeviceFrameSchema, m)),
      ...cloudSamples().map((m) => codec.encode(CloudFrameSchema, m)),
    ];
    const rand = prng(name === "proto" ? 0xc0ffee : 0xbadcafe);
    const mutate = mutator(rand);
    const tally = { decoded: 0, malformed: 0, tooLarge: 0 };
    for (let i = 0; i < CASES; i++) {
      const input = mutate(corpus[i % corpus.length]!, corpus);
      const schema = schemas[i & 1]!;
      try {
        codec.decode(schema, input);
        tally.decoded++;
      } catch (e) {
        if (!(e instanceof PddError) || !allowed.has(e.code)) {
          throw new Error(`case ${i}: untyped failure for input ${Buffer.from(input).toString("hex")}: ${String(e)}`);
        }
        if (e.code === ErrorCode.MALFORMED_FRAME) tally.malformed++;
        else tally.tooLarge++;
      }
    }
    expect(tally.decoded + tally.malformed + tally.tooLarge).toBe(CASES);
    // Both outcomes must actually occur, or the mutator is not exercising the decoder.
    expect(tally.decoded).toBeGreaterThan(0);
    expect(tally.malformed).toBeGreaterThan(CASES / 10);
  });
});

describe("length-prefixed framing under fuzzing", () => {
  it("gives only typed errors for random byte streams cut at random points", () => {
    const rand = prng(42);
    let frames = 0;
    let errors = 0;
    for (let i = 0; i < 20_000; i++) {
      const dec = new FrameDecoder(1024);
      const stream = Uint8Array.from({ length: Math.floor(rand() * 64) }, (_, j) =>
        j < 2 ? 0 : Math.floor(rand() * 256),
      );
      try {
        for (let off = 0; off < stream.length; ) {
          const n = 1 + Math.floor(rand() * 8);
          frames += dec.push(stream.subarray(off, off + n)).length;
          off += n;
        }
        dec.end();
      } catch (e) {
        if (!(e instanceof PddError) || !allowed.has(e.code)) throw e;
        errors++;
      }
    }
    expect(frames).toBeGreaterThan(0);
    expect(errors).toBeGreaterThan(0);
  });
});
