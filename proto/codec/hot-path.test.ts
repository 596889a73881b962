import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, type CloudFrame } from "../gen/pdd/v1/pdd_pb.js";
import { mutator } from "../../conformance/mutator.js"; // a test may reach into another layer (see layers.test.ts)
import { prng } from "../../shared/index.js";
import { decodeTokenFrame } from "./hot-path-decode.js";
import { encodeHotFrame } from "./hot-path-encode.js";

/** Values that land on every varint width boundary. */
const edges = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 4294967295];

function randomTokenFrame(rand: () => number): CloudFrame {
  const pick = () => (rand() < 0.5 ? edges[Math.floor(rand() * edges.length)]! : Math.floor(rand() * 2 ** 32));
  const token = () => ({
    id: pick(),
    piece: Uint8Array.from({ length: Math.floor(rand() * (rand() < 0.05 ? 300 : 6)) }, () => Math.floor(rand() * 256)),
  });
  if (rand() < 0.5) {
    return create(CloudFrameSchema, {
      body: {
        case: "firstToken",
        value: { requestId: pick(), token: rand() < 0.9 ? token() : undefined, queueUs: pick(), prefillUs: pick() },
      },
    });
  }
  return create(CloudFrameSchema, {
    body: {
      case: "tokenBatch",
      value: {
        requestId: pick(),
        startIndex: pick(),
        tokens: Array.from({ length: Math.floor(rand() * (rand() < 0.05 ? 200 : 9)) }, token),
      },
    },
  });
}

describe("token-frame fast path", () => {
  it("writes exactly the bytes of the generic encoder for 20,000 random token frames", () => {
    const rand = prng(7);
    for (let i = 0; i < 20_000; i++) {
      const frame = randomTokenFrame(rand);
      const fast = encodeHotFrame(frame);
      expect(fast).toBeDefined();
      expect(Buffer.from(fast!).equals(toBinary(CloudFrameSchema, frame))).toBe(true);
    }
  });

  it("leaves frames that carry unknown fields to the generic encoder", () => {
    const bytes = Uint8Array.from([...toBinary(CloudFrameSchema, randomTokenFrame(prng(1))), 0xf8, 0x3e, 0x01]); // field 999 varint
    const decoded = fromBinary(CloudFrameSchema, bytes);
    expect(encodeHotFrame(decoded)).toBeUndefined();
  });

  it("writes KV chunks byte-identical to the generic encoder", () => {
    const rand = prng(5);
    const big = [0n, 1n, 127n, 128n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n];
    for (let i = 0; i < 2_000; i++) {
      const pick = () => (rand() < 0.5 ? edges[Math.floor(rand() * edges.length)]! : Math.floor(rand() * 2 ** 32));
      const frame = create(CloudFrameSchema, {
        body: {
          case: "kvChunk",
          value: {
            requestId: pick(),
            format: rand() < 0.5 ? 0 : 1,
            layerStart: pick(),
            layerCount: pick(),
            tokenStart: pick(),
            tokenCount: pick(),
            offset: big[Math.floor(rand() * big.length)]!,
            totalBytes: big[Math.floor(rand() * big.length)]!,
            data: Uint8Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)),
            crc32: pick(),
            imageSha256: rand() < 0.3 ? new Uint8Array(32).fill(9) : new Uint8Array(),
          },
        },
      });
      expect(Buffer.from(encodeHotFrame(frame)!).equals(toBinary(CloudFrameSchema, frame))).toBe(true);
    }
  });

  it("leaves other frame types to the generic encoder", () => {
    expect(encodeHotFrame(create(CloudFrameSchema, { body: { case: "pong", value: { nonce: 1n } } }))).toBeUndefined();
  });
});

describe("token-frame fast decoder", () => {
  it("decodes 20,000 random token frames exactly as fromBinary does", () => {
    const rand = prng(11);
    for (let i = 0; i < 20_000; i++) {
      const bytes = toBinary(CloudFrameSchema, randomTokenFrame(rand));
      const fast = decodeTokenFrame(bytes);
      expect(fast).toBeDefined();
      expect(equals(CloudFrameSchema, fast!, fromBinary(CloudFrameSchema, bytes))).toBe(true);
    }
  });

  it("agrees with fromBinary, or defers to it, on 100,000 mutated frames", () => {
    const rand = prng(12);
    const mutate = mutator(rand);
    const corpus = Array.from({ length: 64 }, () => toBinary(CloudFrameSchema, randomTokenFrame(rand)));
    let decodedFast = 0;
    for (let i = 0; i < 100_000; i++) {
      const input = mutate(corpus[i % corpus.length]!, corpus);
      const fast = decodeTokenFrame(input);
      if (fast === undefined) continue;
      decodedFast++;
      let reference: CloudFrame | undefined;
      try {
        reference = fromBinary(CloudFrameSchema, input);
      } catch (e) {
        throw new Error(
          `fast decoder accepted what fromBinary rejects: ${Buffer.from(input).toString("hex")}: ${String(e)}`,
        );
      }
      expect(equals(CloudFrameSchema, fast, reference), Buffer.from(input).toString("hex")).toBe(true);
    }
    expect(decodedFast).toBeGreaterThan(1000);
  });
});
