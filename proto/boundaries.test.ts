/**
 * The protocol core at its exact limits, where an off-by-one survives every
 * test that stays clear of them (issue 15's audit): a frame of exactly
 * max_frame_bytes, a Takeover at exactly the tokens sent and one past them.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema, type DeviceFrame } from "./gen/pdd/v1/pdd_pb.js";
import { createCodec, CODEC_NAMES } from "./codec/index.js";
import { checkFrameSize } from "./codec/limits.js";
import { ErrorCode, PddError } from "./errors.js";
import { FrameDecoder, lengthPrefixed } from "./framing.js";
import { CloudRequestState } from "./state/cloud-request.js";

const codeOf = (fn: () => unknown): ErrorCode | "none" => {
  try {
    fn();
    return "none";
  } catch (e) {
    expect(e).toBeInstanceOf(PddError);
    return (e as PddError).code;
  }
};

describe("a frame of exactly max_frame_bytes is legal (spec §11), one byte more is not", () => {
  it("checkFrameSize", () => {
    expect(codeOf(() => checkFrameSize(100, 100))).toBe("none");
    expect(codeOf(() => checkFrameSize(101, 100))).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(() => checkFrameSize(101, 100)).toThrow(
      expect.objectContaining({
        local: "ERR_FRAME_TOO_LARGE",
        message: expect.stringMatching(/101 bytes .* 100 bytes/),
      }),
    );
  });

  it("the length-prefixed decoder", () => {
    const payload = new Uint8Array(16).fill(7);
    const [frame] = new FrameDecoder(16).push(lengthPrefixed(payload));
    expect(frame).toEqual(payload);
    expect(codeOf(() => new FrameDecoder(15).push(lengthPrefixed(payload)))).toBe(ErrorCode.FRAME_TOO_LARGE);
  });

  it.each(CODEC_NAMES)("the %s codec", (name) => {
    const frame = create(CloudFrameSchema, {
      body: {
        case: "tokenBatch",
        value: { requestId: 3, startIndex: 1, tokens: [{ id: 5, piece: Uint8Array.of(0x61) }] },
      },
    });
    const bytes = createCodec(name).encode(CloudFrameSchema, frame);
    const exact = createCodec(name, { maxFrameBytes: bytes.length });
    expect(exact.decode(CloudFrameSchema, bytes).body.case).toBe("tokenBatch");
    const under = createCodec(name, { maxFrameBytes: bytes.length - 1 });
    expect(codeOf(() => under.decode(CloudFrameSchema, bytes))).toBe(ErrorCode.FRAME_TOO_LARGE);
  });
});

describe("the cloud takes a Takeover at k = sent and refuses k = sent + 1 (PDD-TAKEOVER-006)", () => {
  const cloudFrame = (body: MessageInitShape<typeof CloudFrameSchema>["body"]) => create(CloudFrameSchema, { body });
  const takeover = (index: number): DeviceFrame =>
    create(DeviceFrameSchema, { body: { case: "takeover", value: { requestId: 1, index } } });
  /** A request that has sent tokens 0, 1 and 2. */
  const sentThree = () => {
    const s = new CloudRequestState(1);
    s.beforeSend(cloudFrame({ case: "accepted", value: { requestId: 1, cloudTokenBudget: 8 } }));
    s.beforeSend(cloudFrame({ case: "firstToken", value: { requestId: 1, token: { id: 1 } } }));
    s.beforeSend(
      cloudFrame({ case: "tokenBatch", value: { requestId: 1, startIndex: 1, tokens: [{ id: 2 }, { id: 3 }] } }),
    );
    return s;
  };

  it("k = sent", () => {
    expect(sentThree().receive(takeover(3))).toEqual({ kind: "takeover", index: 3 });
  });

  it("k = sent + 1", () => {
    const s = sentThree();
    expect(codeOf(() => s.receive(takeover(4)))).toBe(ErrorCode.PROTOCOL_VIOLATION);
    expect(s.stopped).toBeUndefined();
  });
});
