/**
 * A structural check of a MessagePack frame before it is unpacked
 * (PDD-CODEC-013): one value, no bytes after it, no extension type anywhere,
 * only string map keys, no key twice in one map. msgpackr would otherwise
 * turn an integer key into a string, keep the last of two equal keys, and
 * decode extensions under unknown keys. Returns the problem, or undefined.
 * Pure; reads each byte once. @internal
 */
export function msgpackProblem(b: Uint8Array): string | undefined {
  let i = 0;
  const need = (n: number) => {
    if (i + n > b.length) throw new ScanError("truncated");
  };
  const be = (n: number) => {
    need(n);
    let v = 0;
    for (let k = 0; k < n; k++) v = v * 256 + b[i++]!;
    return v;
  };
  const skip = (n: number) => {
    need(n);
    i += n;
  };
  const key = (): string => {
    need(1);
    const t = b[i++]!;
    const n = t >= 0xa0 && t <= 0xbf ? t & 0x1f : t === 0xd9 ? be(1) : t === 0xda ? be(2) : t === 0xdb ? be(4) : -1;
    if (n < 0) throw new ScanError(`a map key of type 0x${t.toString(16)}, not a string`);
    need(n);
    const s = Buffer.from(b.subarray(i, i + n)).toString("latin1");
    i += n;
    return s;
  };
  const map = (n: number, depth: number) => {
    const seen = new Set<string>();
    for (let k = 0; k < n; k++) {
      const name = key();
      if (seen.has(name)) throw new ScanError(`the key ${JSON.stringify(name)} twice in one map`);
      seen.add(name);
      value(depth + 1);
    }
  };
  const array = (n: number, depth: number) => {
    for (let k = 0; k < n; k++) value(depth + 1);
  };
  const value = (depth: number): void => {
    if (depth > 64) throw new ScanError("nested deeper than 64");
    need(1);
    const t = b[i++]!;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) return;
    if (t >= 0x80 && t <= 0x8f) {
      map(t & 0x0f, depth);
      return;
    }
    if (t >= 0x90 && t <= 0x9f) {
      array(t & 0x0f, depth);
      return;
    }
    if (t >= 0xa0 && t <= 0xbf) {
      skip(t & 0x1f);
      return;
    }
    const width = FIXED_WIDTH.get(t);
    if (width !== undefined) {
      skip(width);
      return;
    }
    if (t === 0xc4 || t === 0xd9) {
      skip(be(1));
      return;
    }
    if (t === 0xc5 || t === 0xda) {
      skip(be(2));
      return;
    }
    if (t === 0xc6 || t === 0xdb) {
      skip(be(4));
      return;
    }
    if (t === 0xdc) {
      array(be(2), depth);
      return;
    }
    if (t === 0xdd) {
      array(be(4), depth);
      return;
    }
    if (t === 0xde) {
      map(be(2), depth);
      return;
    }
    if (t === 0xdf) {
      map(be(4), depth);
      return;
    }
    if ((t >= 0xc7 && t <= 0xc9) || (t >= 0xd4 && t <= 0xd8)) throw new ScanError("an extension type");
    throw new ScanError(`the reserved type byte 0x${t.toString(16)}`);
  };
  try {
    value(0);
    if (i !== b.length) return `${b.length - i} bytes after the map`;
    return undefined;
  } catch (e) {
    if (e instanceof ScanError) return e.message;
    throw e;
  }
}

class ScanError extends Error {}

/** Bytes after the type byte of the fixed-width numbers: float 32/64, uint 8..64, int 8..64. */
const FIXED_WIDTH = new Map<number, number>([
  [0xca, 4],
  [0xcb, 8],
  [0xcc, 1],
  [0xcd, 2],
  [0xce, 4],
  [0xcf, 8],
  [0xd0, 1],
  [0xd1, 2],
  [0xd2, 4],
  [0xd3, 8],
]);
