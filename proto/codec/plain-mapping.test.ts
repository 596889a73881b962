/**
 * The MessagePack data model (spec §9.3) at its edges: which values are left
 * out, where 64-bit integers switch from numbers to bigints, the ranges each
 * integer type accepts (just inside and just outside), base64 and base64url
 * bytes, enum names from a later version, both field names, and the errors
 * for a field or a oneof given twice. Written against Stryker's survivors
 * (npm run test:mutation, issue 15). The signed 32- and 64-bit integer types
 * appear in no pdd.v1 message; the well-known wrapper types carry them here.
 */
import { create } from "@bufbuild/protobuf";
import { Int32ValueSchema, Int64ValueSchema, UInt32ValueSchema, UInt64ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  CapabilitiesSchema,
  CloudFrameSchema,
  EndReason,
  EndSchema,
  HelloSchema,
  KvChunkSchema,
  KvFormat,
  PongSchema,
  SamplingSchema,
  TokenBatchSchema,
} from "../gen/pdd/v1/pdd_pb.js";
import { encoderFor, schemaFor } from "./plain-mapping.js";

describe("message -> plain", () => {
  it("leaves out unset and default fields: 0, 0n, empty strings and bytes, false, empty lists", () => {
    const enc = encoderFor(KvChunkSchema);
    expect(enc(create(KvChunkSchema, {}))).toEqual({});
    expect(encoderFor(CapabilitiesSchema)(create(CapabilitiesSchema, { kvChunks: false, kvFormats: [] }))).toEqual({});
    expect(enc(create(KvChunkSchema, { requestId: 1, offset: 2n, data: Uint8Array.of(7) }))).toEqual({
      requestId: 1,
      offset: 2,
      data: Uint8Array.of(7),
    });
    expect(encoderFor(CapabilitiesSchema)(create(CapabilitiesSchema, { kvChunks: true }))).toEqual({ kvChunks: true });
  });

  it("writes 64-bit integers as numbers from -2^31 to 2^32-1 and as bigints beyond", () => {
    const enc = encoderFor(Int64ValueSchema);
    const plain = (value: bigint) => enc(create(Int64ValueSchema, { value })).value;
    expect(plain(-2147483648n)).toBe(-2147483648);
    expect(plain(-2147483649n)).toBe(-2147483649n);
    expect(plain(4294967295n)).toBe(4294967295);
    expect(plain(4294967296n)).toBe(4294967296n);
    expect(encoderFor(PongSchema)(create(PongSchema, { nonce: 2n ** 64n - 1n })).nonce).toBe(2n ** 64n - 1n);
  });

  it("writes enums as names (a number it has no name for as the number), lists item by item", () => {
    const hello = create(HelloSchema, {
      versions: [{ major: 1, minor: 0 }],
      capabilities: { kvFormats: [KvFormat.LLAMA_SEQ_STATE, 99 as KvFormat] },
    });
    expect(encoderFor(HelloSchema)(hello)).toEqual({
      versions: [{ major: 1 }],
      capabilities: { kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE", 99] },
    });
    expect(encoderFor(EndSchema)(create(EndSchema, { reason: EndReason.EOS })).reason).toBe("END_REASON_EOS");
    const batch = create(TokenBatchSchema, { tokens: [{ id: 5 }, { id: 0 }] });
    expect(encoderFor(TokenBatchSchema)(batch)).toEqual({ tokens: [{ id: 5 }, {}] });
  });

  it("writes the set member of a oneof under its JSON name, and nothing for an unset oneof", () => {
    const enc = encoderFor(CloudFrameSchema);
    expect(enc(create(CloudFrameSchema, {}))).toEqual({});
    expect(enc(create(CloudFrameSchema, { body: { case: "kvChunk", value: { requestId: 3 } } }))).toEqual({
      kvChunk: { requestId: 3 },
    });
  });

  it("compiles each message type once", () => {
    expect(encoderFor(KvChunkSchema)).toBe(encoderFor(KvChunkSchema));
    expect(schemaFor(KvChunkSchema)).toBe(schemaFor(KvChunkSchema));
  });
});

/** The decoded message, or the first issue's message. */
function parse(schema: Parameters<typeof schemaFor>[0], plain: unknown): unknown {
  const r = schemaFor(schema).safeParse(plain);
  return r.success ? r.data : `error: ${r.error.issues[0]?.message}`;
}
const decodedValue = (schema: Parameters<typeof schemaFor>[0], value: unknown) => {
  const r = parse(schema, { value });
  return typeof r === "string" ? r : (r as { value: unknown }).value;
};

describe("plain -> message: integers", () => {
  it("int32 from -2^31 to 2^31-1, integers only", () => {
    expect(decodedValue(Int32ValueSchema, -2147483648)).toBe(-2147483648);
    expect(decodedValue(Int32ValueSchema, 2147483647)).toBe(2147483647);
    expect(decodedValue(Int32ValueSchema, "-12")).toBe(-12);
    expect(decodedValue(Int32ValueSchema, 7n)).toBe(7);
    expect(decodedValue(Int32ValueSchema, -2147483649)).toBe("error: integer out of range [-2147483648, 2147483647]");
    expect(decodedValue(Int32ValueSchema, 2147483648)).toBe("error: integer out of range [-2147483648, 2147483647]");
    expect(decodedValue(Int32ValueSchema, 1.5)).toBe("error: integer out of range [-2147483648, 2147483647]");
  });

  it("uint32 from 0 to 2^32-1", () => {
    expect(decodedValue(UInt32ValueSchema, 0)).toBe(0);
    expect(decodedValue(UInt32ValueSchema, 4294967295)).toBe(4294967295);
    expect(decodedValue(UInt32ValueSchema, -1)).toBe("error: integer out of range [0, 4294967295]");
    expect(decodedValue(UInt32ValueSchema, 4294967296)).toBe("error: integer out of range [0, 4294967295]");
  });

  it("int64 from -2^63 to 2^63-1, as numbers, bigints or decimal strings", () => {
    expect(decodedValue(Int64ValueSchema, "-9223372036854775808")).toBe(-(2n ** 63n));
    expect(decodedValue(Int64ValueSchema, 2n ** 63n - 1n)).toBe(2n ** 63n - 1n);
    expect(decodedValue(Int64ValueSchema, -5)).toBe(-5n);
    expect(decodedValue(Int64ValueSchema, "-9223372036854775809")).toBe("error: 64-bit integer out of range");
    expect(decodedValue(Int64ValueSchema, 2n ** 63n)).toBe("error: 64-bit integer out of range");
    expect(decodedValue(Int64ValueSchema, 2.5)).toBe("error: not an integer");
    expect(decodedValue(Int64ValueSchema, "2.5")).toMatch(/^error: /);
  });

  it("uint64 from 0 to 2^64-1", () => {
    expect(decodedValue(UInt64ValueSchema, 0)).toBe(0n);
    expect(decodedValue(UInt64ValueSchema, "18446744073709551615")).toBe(2n ** 64n - 1n);
    expect(decodedValue(UInt64ValueSchema, -1)).toBe("error: 64-bit integer out of range");
    expect(decodedValue(UInt64ValueSchema, 2n ** 64n)).toBe("error: 64-bit integer out of range");
  });
});

describe("plain -> message: other scalars, enums, names", () => {
  it("floats, with NaN and the infinities as the JSON mapping spells them", () => {
    const temperature = (t: unknown) =>
      (parse(SamplingSchema, { temperature: t }) as { temperature: number }).temperature;
    expect(temperature(0.5)).toBe(0.5);
    expect(temperature("NaN")).toBeNaN();
    expect(temperature("Infinity")).toBe(Number.POSITIVE_INFINITY);
    expect(temperature("-Infinity")).toBe(Number.NEGATIVE_INFINITY);
  });

  it("bytes as bin, base64 or base64url; anything else is refused", () => {
    const data = (d: unknown) => {
      const r = parse(KvChunkSchema, { data: d });
      return typeof r === "string" ? r : Buffer.from((r as { data: Uint8Array }).data).toString("hex");
    };
    expect(data(Uint8Array.of(1, 2))).toBe("0102");
    expect(data("+/8=")).toBe("fbff");
    expect(data("-_8")).toBe("fbff");
    expect(data("__8=")).toBe("ffff");
    expect(data("ab!")).toMatch(/^error: /);
    expect(data("YQ==")).toBe("61");
  });

  it("enums by name, an unknown name as the zero value, numbers as they are", () => {
    const reason = (r: unknown) => (parse(EndSchema, { reason: r }) as { reason: number }).reason;
    expect(reason("END_REASON_EOS")).toBe(EndReason.EOS);
    expect(reason("END_REASON_FROM_THE_FUTURE")).toBe(0);
    expect(reason(42)).toBe(42);
  });

  it("the JSON name or the proto name, null as the default, unknown keys dropped; never a field twice", () => {
    expect(parse(KvChunkSchema, { request_id: 4, tokenCount: null, fromTheFuture: 1 })).toMatchObject({
      requestId: 4,
      tokenCount: 0,
    });
    expect(parse(KvChunkSchema, { requestId: 4, request_id: 5 })).toBe("error: field request_id given twice");
    expect(parse(KvChunkSchema, { requestId: 4, request_id: null })).toMatchObject({ requestId: 4 });
  });

  it("one member of a oneof at most", () => {
    expect(parse(CloudFrameSchema, { end: {}, kvChunk: {} })).toBe("error: more than one member of oneof body");
    expect(parse(CloudFrameSchema, { end: { reason: 1 }, kvChunk: null })).toMatchObject({
      body: { case: "end", value: { reason: 1 } },
    });
  });
});
