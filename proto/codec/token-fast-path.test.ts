import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, type CloudFrame } from "../gen/pdd/v1/pdd_pb.js";
import { prng } from "../test/prng.js";
import { encodeTokenFrame } from "./token-fast-path.js";

/** Values that land on every varint width boundary. */
const edges = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 4294967295];

function randomTokenFrame(rand: () => number): CloudFrame {
  const pick = () => (rand() < 0.5 ? edges[Math.floor(rand() * edges.length)]! : Math.floor(rand() * 2 ** 32));
  const token = () => ({ id: pick(), piece: Uint8Array.from({ length: Math.floor(rand() * (rand() < 0.05 ? 300 : 6)) }, () => Math.floor(rand() * 256)) });
  if (rand() < 0.5) {
    return create(CloudFrameSchema, {
      body: { case: "firstToken", value: { requestId: pick(), token: rand() < 0.9 ? token() : undefined, queueUs: pick(), prefillUs: pick() } },
    });
  }
  return create(CloudFrameSchema, {
    body: { case: "tokenBatch", value: { requestId: pick(), startIndex: pick(), tokens: Array.from({ length: Math.floor(rand() * (rand() < 0.05 ? 200 : 9)) }, token) } },
  });
}

describe("token-frame fast path", () => {
  it("writes exactly the bytes of the generic encoder for 20,000 random token frames", () => {
    const rand = prng(7);
    for (let i = 0; i < 20_000; i++) {
      const frame = randomTokenFrame(rand);
      const fast = encodeTokenFrame(frame);
      expect(fast).toBeDefined();
      expect(Buffer.from(fast!).equals(toBinary(CloudFrameSchema, frame))).toBe(true);
    }
  });

  it("leaves frames that carry unknown fields to the generic encoder", () => {
    const bytes = Uint8Array.from([...toBinary(CloudFrameSchema, randomTokenFrame(prng(1))), 0xf8, 0x3e, 0x01]); // field 999 varint
    const decoded = fromBinary(CloudFrameSchema, bytes);
    expect(encodeTokenFrame(decoded)).toBeUndefined();
  });

  it("leaves other frame types to the generic encoder", () => {
    expect(encodeTokenFrame(create(CloudFrameSchema, { body: { case: "pong", value: { nonce: 1n } } }))).toBeUndefined();
  });
});
