/**
 * The suite's own view of the wire: protobufjs loading pdd.proto at run time,
 * and msgpackr with protobufjs's object mapping — none of the codec code of
 * the implementation under test (it may be ours).
 */
import { Packr, Unpackr } from "msgpackr";
import protobuf from "protobufjs";
import { PROTO_FILE } from "../proto/index.js";

const root = protobuf.loadSync(PROTO_FILE);
/**
 * The minor of version 1 this suite speaks: its Hello offers 1.SUITE_MINOR and, as a cloud, it answers
 * with 1.min(offered, SUITE_MINOR) (PDD-VER-002). Its own constant, not proto/'s: the suite follows the spec.
 */
export const SUITE_MINOR = 2;

export const DeviceFrameType = root.lookupType("pdd.v1.DeviceFrame");
export const CloudFrameType = root.lookupType("pdd.v1.CloudFrame");

export type Codec = "proto" | "msgpack";
/** A frame as plain data: `{ body: "hello", hello: {...} }`, enums by name, 64-bit integers as strings. */
export type Frame = Record<string, unknown> & { body?: string };

const toObject: protobuf.IConversionOptions = {
  enums: String,
  longs: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "string" });

function encodeAs(type: protobuf.Type, frame: Frame, codec: Codec, unchecked = false): Uint8Array {
  const message = type.fromObject(frame);
  const err = unchecked ? null : type.verify(message);
  if (err) throw new Error(`test bug: invalid ${type.name}: ${err}`);
  if (codec === "proto") return type.encode(message).finish();
  const plain = type.toObject(message, {
    enums: String,
    longs: String,
    bytes: Buffer,
    defaults: false,
    oneofs: false,
  });
  return packr.pack(int64sAsBigInt(type, plain));
}

function decodeAs(type: protobuf.Type, bytes: Uint8Array, codec: Codec): Frame {
  if (codec === "proto") return type.toObject(type.decode(bytes), toObject) as Frame;
  const plain = unpackr.unpack(bytes) as Record<string, unknown>;
  if (plain === null || typeof plain !== "object" || Array.isArray(plain))
    throw new Error("MessagePack frame is not a map");
  return type.toObject(type.fromObject(plain), toObject) as Frame;
}

/** Encodes a device frame given as plain data. Throws on a value the schema cannot hold. */
export const encodeDevice = (frame: Frame, codec: Codec, unchecked = false): Uint8Array =>
  encodeAs(DeviceFrameType, frame, codec, unchecked);
/** Encodes a cloud frame (the suite playing the cloud). */
export const encodeCloud = (frame: Frame, codec: Codec, unchecked = false): Uint8Array =>
  encodeAs(CloudFrameType, frame, codec, unchecked);

const LONGS = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);

/** 64-bit fields as BigInt, so MessagePack writes them as integers (PDD-CODEC-006), exactly. */
function int64sAsBigInt(type: protobuf.Type, obj: Record<string, unknown>): Record<string, unknown> {
  for (const f of type.fieldsArray) {
    const v = obj[f.name];
    if (v === undefined || v === null) continue;
    f.resolve();
    if (f.resolvedType instanceof protobuf.Type) {
      const t = f.resolvedType;
      obj[f.name] = Array.isArray(v)
        ? v.map((x) => int64sAsBigInt(t, x as Record<string, unknown>))
        : int64sAsBigInt(t, v as Record<string, unknown>);
    } else if (LONGS.has(f.type)) {
      obj[f.name] = Array.isArray(v) ? v.map((x) => BigInt(x as string)) : BigInt(v as string);
    }
  }
  return obj;
}

/** Decodes a cloud frame; throws a plain Error on bytes that are not one. */
export const decodeCloud = (bytes: Uint8Array, codec: Codec): Frame => decodeAs(CloudFrameType, bytes, codec);
/** Decodes a device frame (the suite playing the cloud). */
export const decodeDevice = (bytes: Uint8Array, codec: Codec): Frame => decodeAs(DeviceFrameType, bytes, codec);

/** A compact one-line rendering for frame logs. */
export function render(frame: Frame): string {
  const body = frame.body ?? Object.keys(frame).find((k) => typeof frame[k] === "object") ?? "(none)";
  const v = frame[body] as Record<string, unknown> | undefined;
  return `${body} ${JSON.stringify(v, (_k, x) => (Buffer.isBuffer(x) || x instanceof Uint8Array ? `<${(x as Uint8Array).length} bytes>` : x))}`;
}
