/**
 * The MessagePack data model of a pdd.v1 message (spec/09-codecs.md §9.3).
 *
 * It is the proto3 JSON mapping with two departures that keep MessagePack
 * compact: `bytes` fields are MessagePack bin (base64 strings are still
 * accepted), and 64-bit integers are MessagePack integers (decimal strings are
 * still accepted). Enums are written as their value names.
 *
 * Both directions are compiled once per message descriptor by reflection, so
 * the mapping and its zod validation can never drift from pdd.proto.
 *
 * @internal
 */
import {
  create,
  ScalarType,
  type MessageInitShape,
  type DescField,
  type DescMessage,
  type DescEnum,
  type Message,
} from "@bufbuild/protobuf";
import { z } from "zod";

type Plain = Record<string, unknown>;
type Encoder = (msg: Message) => Plain;

const encoders = new WeakMap<DescMessage, Encoder>();
const schemas = new WeakMap<DescMessage, z.ZodType<Message>>();

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

// ---------------------------------------------------------------------------
// message -> plain
// ---------------------------------------------------------------------------

function isDefaultScalar(v: unknown): boolean {
  return v === 0 || v === 0n || v === "" || v === false || (v instanceof Uint8Array && v.length === 0);
}

function scalarToPlain(type: ScalarType, v: unknown): unknown {
  switch (type) {
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64: {
      // MessagePack carries 64-bit integers natively (PDD-CODEC-006). Only
      // 32-bit values may go as JS numbers: msgpackr writes larger numbers as
      // float64 (a conformance case caught Pong.received_at_us as a float).
      const b = v as bigint;
      return b >= -2147483648n && b <= 4294967295n ? Number(b) : b;
    }
    default:
      return v;
  }
}

function enumName(e: DescEnum, n: number): string | number {
  return e.value[n]?.name ?? n;
}

function fieldToPlain(f: DescField, v: unknown): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return scalarToPlain(f.scalar, v);
    case "enum":
      return enumName(f.enum, v as number);
    case "message":
      return encoderFor(f.message)(v as Message);
    case "list": {
      const arr = v as unknown[];
      switch (f.listKind) {
        case "scalar":
          return arr.map((x) => scalarToPlain(f.scalar, x));
        case "enum":
          return arr.map((x) => enumName(f.enum, x as number));
        case "message": {
          const enc = encoderFor(f.message);
          return arr.map((x) => enc(x as Message));
        }
      }
      break;
    }
    case "map":
      throw new Error("map fields are not used by pdd.v1");
  }
  throw new Error("unreachable");
}

/** Returns the plain-object encoder for one message type. */
export function encoderFor(desc: DescMessage): Encoder {
  let enc = encoders.get(desc);
  if (enc) return enc;
  const members = desc.members;
  enc = (msg: Message) => {
    const out: Plain = {};
    // Fields are read by the descriptor's localName at run time; a Message type has no index signature.
    const m = msg as unknown as Record<string, unknown>;
    for (const member of members) {
      if (member.kind === "oneof") {
        const sel = m[member.localName] as { case?: string; value?: unknown };
        if (sel.case === undefined) continue;
        const f = member.fields.find((x) => x.localName === sel.case);
        if (f) out[f.jsonName] = fieldToPlain(f, sel.value);
        continue;
      }
      const v = m[member.localName];
      if (v === undefined) continue;
      if (member.fieldKind === "list" && (v as unknown[]).length === 0) continue;
      if ((member.fieldKind === "scalar" || member.fieldKind === "enum") && isDefaultScalar(v)) continue;
      out[member.jsonName] = fieldToPlain(member, v);
    }
    return out;
  };
  encoders.set(desc, enc);
  return enc;
}

// ---------------------------------------------------------------------------
// plain -> message (validated)
// ---------------------------------------------------------------------------

const intLike = z.union([z.number(), z.bigint(), z.string().regex(/^-?[0-9]+$/)]);

function int32Schema(min: number, max: number) {
  return intLike.transform((v, ctx) => {
    const n = typeof v === "number" ? v : Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: "custom", message: `integer out of range [${min}, ${max}]` });
      return z.NEVER;
    }
    return n;
  });
}

function int64Schema(min: bigint, max: bigint) {
  return intLike.transform((v, ctx) => {
    if (typeof v === "number" && !Number.isInteger(v)) {
      ctx.addIssue({ code: "custom", message: "not an integer" });
      return z.NEVER;
    }
    const b = BigInt(v);
    if (b < min || b > max) {
      ctx.addIssue({ code: "custom", message: "64-bit integer out of range" });
      return z.NEVER;
    }
    return b;
  });
}

const floatSchema = z.union([z.number(), z.enum(["NaN", "Infinity", "-Infinity"]).transform(Number)]);

const bytesSchema = z.union([
  z.instanceof(Uint8Array),
  z
    .string()
    .regex(/^[A-Za-z0-9+/_-]*={0,2}$/, "not base64")
    .transform((s) => new Uint8Array(Buffer.from(s, s.includes("-") || s.includes("_") ? "base64url" : "base64"))),
]);

function scalarSchema(type: ScalarType): z.ZodType<unknown> {
  switch (type) {
    case ScalarType.BOOL:
      return z.boolean();
    case ScalarType.STRING:
      return z.string();
    case ScalarType.BYTES:
      return bytesSchema;
    case ScalarType.DOUBLE:
      return floatSchema;
    case ScalarType.FLOAT:
      // A float 64 on the wire means its nearest float32, as over protobuf (PDD-CODEC-012).
      return floatSchema.transform(Math.fround);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Schema(INT32_MIN, INT32_MAX);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return int32Schema(0, UINT32_MAX);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Schema(INT64_MIN, INT64_MAX);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Schema(0n, UINT64_MAX);
  }
}

function enumSchema(e: DescEnum): z.ZodType<number> {
  const byName = new Map(e.values.map((v) => [v.name, v.number]));
  // An unknown name is a value from a later minor version: it decodes as the
  // zero value (spec PDD-CODEC-008). Numbers pass through, as in binary.
  return z.union([z.string().transform((s) => byName.get(s) ?? 0), int32Schema(INT32_MIN, INT32_MAX)]);
}

function fieldSchema(f: DescField): z.ZodType<unknown> {
  switch (f.fieldKind) {
    case "scalar":
      return scalarSchema(f.scalar);
    case "enum":
      return enumSchema(f.enum);
    case "message":
      return z.lazy(() => schemaFor(f.message));
    case "list": {
      const elem =
        f.listKind === "scalar"
          ? scalarSchema(f.scalar)
          : f.listKind === "enum"
            ? enumSchema(f.enum)
            : z.lazy(() => schemaFor(f.message));
      return z.array(elem);
    }
    case "map":
      throw new Error("map fields are not used by pdd.v1");
  }
}

/**
 * Returns the zod schema that validates the plain form of `desc` and yields
 * the typed message. Unknown keys are dropped (PDD-VER-005); `null` means the
 * field's default; both the JSON name and the proto field name are accepted.
 */
export function schemaFor<T extends Message>(desc: DescMessage): z.ZodType<T> {
  let schema = schemas.get(desc);
  if (schema) return schema as z.ZodType<T>;
  const shape: Record<string, z.ZodType<unknown>> = {};
  const keys: { field: DescField; names: string[] }[] = [];
  for (const field of desc.fields) {
    const s = fieldSchema(field).nullable().optional();
    const names = field.name === field.jsonName ? [field.jsonName] : [field.jsonName, field.name];
    for (const n of names) shape[n] = s;
    keys.push({ field, names });
  }
  schema = z.object(shape).transform((obj, ctx) => {
    const init: Record<string, unknown> = {};
    for (const { field, names } of keys) {
      let value: unknown;
      let seen = 0;
      for (const n of names) {
        const v = obj[n];
        if (v !== undefined && v !== null) {
          value = v;
          seen++;
        }
      }
      if (seen > 1) {
        ctx.addIssue({ code: "custom", message: `field ${field.name} given twice`, path: [field.jsonName] });
        return z.NEVER;
      }
      if (value === undefined) continue;
      if (field.oneof) {
        const cur = init[field.oneof.localName] as { case?: string } | undefined;
        if (cur !== undefined) {
          ctx.addIssue({
            code: "custom",
            message: `more than one member of oneof ${field.oneof.name}`,
            path: [field.jsonName],
          });
          return z.NEVER;
        }
        init[field.oneof.localName] = { case: field.localName, value };
      } else {
        init[field.localName] = value;
      }
    }
    // The init is built field by field from the descriptor at run time; MessageInitShape types it for one schema only.
    return create(desc, init as MessageInitShape<DescMessage>);
  });
  schemas.set(desc, schema);
  return schema as z.ZodType<T>;
}
