/**
 * protobufjs loads pdd.proto at run time and is an implementation independent
 * of @bufbuild/protobuf: bytes from one must mean the same to the other.
 */
import { fromBinary, toBinary, toJson, type DescMessage } from "@bufbuild/protobuf";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema } from "../gen/pdd/v1/pdd_pb.js";
import { ErrorCode } from "../errors.js";
import { PROTO_FILE } from "../index.js";
import { createCodec } from "./index.js";
import { cloudSamples, deviceSamples } from "../test/samples.js";

const root = protobuf.loadSync(PROTO_FILE);
const toObjectOptions: protobuf.IConversionOptions = { longs: String, enums: String, bytes: String, defaults: false };

/** Drops proto3 default values so both libraries' JSON forms compare equal. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const c = canonical(x);
      const isDefault =
        c === 0 ||
        c === "0" ||
        c === "" ||
        c === false ||
        c === null ||
        (typeof c === "string" && c.endsWith("_UNSPECIFIED")) ||
        (Array.isArray(c) && c.length === 0);
      if (!isDefault) out[k] = c;
    }
    return out;
  }
  // protobufjs writes float32 values widened to double; the JSON form of
  // protobuf-es does the same, so numbers compare as they are.
  return v;
}

const cases: [string, DescMessage, () => unknown[]][] = [
  ["pdd.v1.DeviceFrame", DeviceFrameSchema, deviceSamples],
  ["pdd.v1.CloudFrame", CloudFrameSchema, cloudSamples],
];

describe.each(cases)("%s under protobufjs", (typeName, schema, samples) => {
  const type = root.lookupType(typeName);

  it("decodes every body written by @bufbuild/protobuf to the same content", () => {
    for (const sample of samples()) {
      const bytes = toBinary(schema, sample as never);
      const decoded = type.toObject(type.decode(bytes), toObjectOptions);
      expect(canonical(decoded)).toEqual(canonical(toJson(schema, sample as never)));
    }
  });

  it("writes bytes that @bufbuild/protobuf decodes to the same content", () => {
    for (const sample of samples()) {
      const plain = toJson(schema, sample as never) as Record<string, unknown>;
      const pjsMessage = type.fromObject(plain);
      const bytes = type.encode(pjsMessage).finish();
      const back = fromBinary(schema, bytes);
      expect(canonical(toJson(schema, back))).toEqual(canonical(plain));
    }
  });
});

describe("malformed nesting, under protobufjs and the proto codec alike", () => {
  const type = root.lookupType("pdd.v1.CloudFrame");
  const codec = createCodec("proto");
  // A TokenBatch{7, 12, [Token{5, "."}]} with its length prefixes right, then with the Token's or the
  // batch's one byte short or long: a field that runs past its own message is refused, not read on.
  it.each([
    ["220b0807100c1a05080512012e", true],
    ["220b0807100c1a04080512012e", false], // the Token's piece runs past the Token
    ["220a0807100c1a04080512012e", false], // ...and the batch ends a byte early
    ["220b0807100c1a06080512012e", false], // the Token runs past the batch
  ])("%s: valid %s", (hex, valid) => {
    const bytes = Buffer.from(hex, "hex");
    const ours = () => codec.decode(CloudFrameSchema, bytes);
    const theirs = () => type.decode(bytes);
    if (valid) {
      expect(ours).not.toThrow();
      expect(theirs).not.toThrow();
      return;
    }
    expect(theirs).toThrow();
    expect(ours).toThrow(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME }));
  });
});
