/**
 * protobuf-es 2.17's `fromBinary` reads a nested message's fields against the
 * end of the whole buffer, not the end of the nested message: a field that
 * overruns its sub-message's length (and a frame whose last bytes belong to
 * no field) decodes without error. protobufjs, protoc's runtimes and the spec
 * (§9.2: a frame that is not a valid encoding is MALFORMED_FRAME) refuse it.
 * This walk checks every length-delimited message field stays inside its
 * parent before `fromBinary` runs.
 * @internal
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

const MAX_DEPTH = 32;

function messageOf(schema: DescMessage, fieldNo: number): DescMessage | undefined {
  const f = schema.fields.find((x) => x.number === fieldNo);
  if (f?.fieldKind === "message") return f.message;
  if (f?.fieldKind === "list" && f.listKind === "message") return f.message;
  return undefined;
}

/** Throws when a nested message's fields run past its length, or the bytes end inside a field. */
export function checkNesting(schema: DescMessage, bytes: Uint8Array, depth = 0): void {
  if (depth > MAX_DEPTH) throw new Error("messages nested too deep");
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [fieldNo, wireType] = r.tag();
    const sub = wireType === WireType.LengthDelimited ? messageOf(schema, fieldNo) : undefined;
    if (sub === undefined) {
      r.skip(wireType, fieldNo);
      continue;
    }
    const n = r.uint32();
    const start = r.pos;
    if (start + n > r.len) throw new RangeError("premature EOF");
    r.pos += n;
    checkNesting(sub, bytes.subarray(start, start + n), depth + 1);
  }
}
