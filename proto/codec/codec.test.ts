import { equals, type DescMessage } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema } from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode, PddError } from "../errors.js";
import { cloudSamples, deviceSamples } from "../test/samples.js";
import { createCodec, CODEC_NAMES } from "./index.js";

const cases: [string, DescMessage, () => unknown[]][] = [
  ["DeviceFrame", DeviceFrameSchema, deviceSamples],
  ["CloudFrame", CloudFrameSchema, cloudSamples],
];

describe.each(CODEC_NAMES)("%s codec", (name) => {
  const codec = createCodec(name);

  for (const [label, schema, samples] of cases) {
    for (const sample of samples()) {
      const body = (sample as { body: { case: string } }).body.case;
      it(`round-trips ${label}.${body} unchanged`, () => {
        const bytes = codec.encode(schema, sample as never);
        const back = codec.decode(schema, bytes);
        expect(equals(schema, back as never, sample as never)).toBe(true);
      });
    }
  }

  it("decodes an empty envelope as a frame with no body (ignored by receivers)", () => {
    const bytes = codec.encode(DeviceFrameSchema, {
      $typeName: "pdd.v1.DeviceFrame",
      body: { case: undefined },
    } as never);
    expect(codec.decode(DeviceFrameSchema, bytes).body.case).toBeUndefined();
  });

  it("refuses a frame over the size limit before decoding it", () => {
    const small = createCodec(name, { maxFrameBytes: 8 });
    const bytes = codec.encode(CloudFrameSchema, cloudSamples()[0]!);
    expect(() => small.decode(CloudFrameSchema, bytes)).toThrow(PddError);
    try {
      small.decode(CloudFrameSchema, bytes);
    } catch (e) {
      expect((e as PddError).code).toBe(ErrorCode.FRAME_TOO_LARGE);
    }
  });
});

describe("msgpack codec specifics", () => {
  const codec = createCodec("msgpack");

  it("ignores keys it does not know, as a later minor version may add fields", async () => {
    const { pack } = await import("msgpackr");
    const bytes = pack({ takeover: { requestId: 3, index: 9, futureField: [1, 2] }, futureTopLevel: true });
    const f = codec.decode(DeviceFrameSchema, bytes);
    expect(f.body.case).toBe("takeover");
    expect(f.body.value).toMatchObject({ requestId: 3, index: 9 });
  });

  it("accepts proto field names, base64 bytes and decimal 64-bit strings from the JSON mapping", async () => {
    const { pack } = await import("msgpackr");
    const bytes = pack({ kv_credit: { request_id: 4, bytes: "18446744073709551615" } });
    const f = codec.decode(DeviceFrameSchema, bytes);
    expect(f.body.value).toMatchObject({ requestId: 4, bytes: 18446744073709551615n });
    const tok = codec.decode(CloudFrameSchema, pack({ firstToken: { requestId: 1, token: { id: 2, piece: "SGk=" } } }));
    expect(tok.body.case === "firstToken" && Buffer.from(tok.body.value.token!.piece).toString()).toBe("Hi");
  });

  it("decodes an enum name from a later minor version as the zero value", async () => {
    const { pack } = await import("msgpackr");
    const f = codec.decode(DeviceFrameSchema, pack({ cancel: { requestId: 1, code: "ERROR_CODE_FROM_THE_FUTURE" } }));
    expect(f.body.value).toMatchObject({ code: 0 });
  });

  it.each([
    ["two oneof members", { takeover: { requestId: 1 }, cancel: { requestId: 1 } }],
    ["a string where a number belongs", { takeover: { requestId: "one" } }],
    ["a negative uint32", { takeover: { requestId: -1 } }],
    ["a uint32 over 2^32-1", { takeover: { requestId: 2 ** 32 } }],
    ["a fraction in an integer", { takeover: { requestId: 1.5 } }],
    ["an array where a message belongs", { takeover: [1, 2] }],
    ["a top-level array", [1, 2, 3]],
    ["a top-level string", "hello"],
  ])("rejects %s with MALFORMED_FRAME", async (_label, value) => {
    const { pack } = await import("msgpackr");
    let err: unknown;
    try {
      codec.decode(DeviceFrameSchema, pack(value));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PddError);
    expect((err as PddError).code).toBe(ErrorCode.MALFORMED_FRAME);
  });

  it("writes bytes as MessagePack bin, not base64", () => {
    const kv = cloudSamples().find((f) => f.body.case === "kvChunk")!;
    const bytes = codec.encode(CloudFrameSchema, kv);
    // 100 data bytes as bin8: 0xc4 0x64 followed by 00 01 02 …
    expect(Buffer.from(bytes).includes(Buffer.from([0xc4, 0x64, 0, 1, 2, 3]))).toBe(true);
  });
});

describe("createCodec", () => {
  it("names an unknown codec with UNSUPPORTED_CODEC", () => {
    expect(() => createCodec("json")).toThrow(/unsupported_codec/);
  });
});
