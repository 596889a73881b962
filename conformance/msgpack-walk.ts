/** A MessagePack walker for the codec cases: it records types by path, not values. */

/** Fixed-width MessagePack types: type byte → [kind, payload bytes]. */
const MSGPACK_FIXED = new Map<number, [kind: string, bytes: number]>([
  [0xc0, ["nil", 0]],
  [0xc2, ["bool", 0]],
  [0xc3, ["bool", 0]],
  [0xca, ["float", 4]],
  [0xcb, ["float", 8]],
  [0xcc, ["int", 1]],
  [0xd0, ["int", 1]],
  [0xcd, ["int", 2]],
  [0xd1, ["int", 2]],
  [0xce, ["int", 4]],
  [0xd2, ["int", 4]],
  [0xcf, ["int", 8]],
  [0xd3, ["int", 8]],
]);

/** Length-prefixed MessagePack types: type byte → [kind, length bytes]. */
const MSGPACK_SIZED = new Map<number, [kind: "bin" | "str" | "arr" | "map", lengthBytes: number]>([
  [0xc4, ["bin", 1]],
  [0xc5, ["bin", 2]],
  [0xc6, ["bin", 4]],
  [0xd9, ["str", 1]],
  [0xda, ["str", 2]],
  [0xdb, ["str", 4]],
  [0xdc, ["arr", 2]],
  [0xdd, ["arr", 4]],
  [0xde, ["map", 2]],
  [0xdf, ["map", 4]],
]);

/** Records the type of every MessagePack value by path, and the first extension type. */
class MsgpackWalker {
  readonly types = new Map<string, string>();
  ext: string | undefined;
  private i = 0;
  constructor(private readonly b: Uint8Array) {}

  /** Walks the value at `path`; returns its text when it is a string (map keys need it). */
  value(path: string): string | undefined {
    const t = this.u8();
    if (t <= 0x7f || t >= 0xe0) return this.note(path, "int");
    if (t >= 0x80 && t <= 0x8f) return this.map(path, t & 0x0f);
    if (t >= 0x90 && t <= 0x9f) return this.arr(path, t & 0x0f);
    if (t >= 0xa0 && t <= 0xbf) return this.str(path, t & 0x1f);
    const fixed = MSGPACK_FIXED.get(t);
    if (fixed) {
      this.i += fixed[1];
      return this.note(path, fixed[0]);
    }
    const sized = MSGPACK_SIZED.get(t);
    if (!sized) {
      this.ext ??= `type byte 0x${t.toString(16)} at ${path || "the top"}`;
      throw new Error("extension");
    }
    const n = this.be(sized[1]);
    if (sized[0] === "str") return this.str(path, n);
    if (sized[0] === "arr") return this.arr(path, n);
    if (sized[0] === "map") return this.map(path, n);
    this.i += n;
    return this.note(path, "bin");
  }

  private map(path: string, n: number): undefined {
    if (path) this.note(path, "map"); // presence of a message field is its key with a map (PDD-CODEC-014)
    for (let k = 0; k < n; k++) {
      const key = this.key(path);
      this.value(path ? `${path}.${key}` : key);
    }
  }

  /** A fixstr or str8 key is read without noting its type; any other key is walked as a value. */
  private key(path: string): string {
    const keyType = this.b[this.i]!;
    if (keyType >= 0xa0 && keyType <= 0xbf) return this.text(this.u8() & 0x1f);
    if (keyType === 0xd9) {
      this.i++;
      return this.text(this.be(1));
    }
    return this.value(`${path}.<key>`) ?? "<key>";
  }

  private arr(path: string, n: number): undefined {
    for (let k = 0; k < n; k++) this.value(`${path}[]`);
  }

  private str(path: string, n: number): string {
    this.note(path, "str");
    return this.text(n);
  }

  private note(path: string, kind: string): undefined {
    this.types.set(path, kind);
  }

  private u8(): number {
    return this.b[this.i++]!;
  }

  private be(n: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) v = v * 256 + this.u8();
    return v;
  }

  private text(n: number): string {
    const s = Buffer.from(this.b.subarray(this.i, this.i + n)).toString("utf8");
    this.i += n;
    return s;
  }
}

/**
 * Walks one MessagePack value and reports the first extension type (PDD-CODEC-009)
 * and the type of every value by path, so bytes and 64-bit fields can be checked.
 */
export function walkMsgpack(b: Uint8Array): { ext: string | undefined; types: Map<string, string> } {
  const walker = new MsgpackWalker(b);
  try {
    walker.value("");
  } catch {
    // the extension is recorded in walker.ext
  }
  return { ext: walker.ext, types: walker.types };
}
