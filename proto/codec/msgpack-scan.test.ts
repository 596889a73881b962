import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { msgpackProblem } from "./msgpack-scan.js";

// variableMapSize: small maps as fixmaps, whose header withEntry can bump.
const pack = (v: unknown) => new Packr({ useRecords: false, moreTypes: false, variableMapSize: true }).pack(v);
/** `map` (fewer than 15 keys) with one more entry of raw bytes appended. */
const withEntry = (map: Record<string, unknown>, entry: number[]) => {
  const b = pack(map);
  return Uint8Array.from([b[0]! + 1, ...b.subarray(1), ...entry]);
};
const str = (s: string) => [0xa0 + s.length, ...Buffer.from(s)];

describe("the MessagePack structure check (PDD-CODEC-013)", () => {
  it("passes plain frames, nested maps, arrays, binary and every number width", () => {
    const frame = { ping: { nonce: 2n ** 40n, sentAtUs: 1 }, a: [1, -1, 1.5, "x", null, true], b: new Uint8Array(300) };
    expect(msgpackProblem(pack(frame))).toBeUndefined();
  });

  it("finds an extension type, even under an unknown key", () => {
    expect(msgpackProblem(withEntry({ ping: {} }, [...str("zz"), 0xd6, 0xff, 0, 0, 0, 0]))).toMatch(/extension/);
  });

  it("finds a key that is not a string, and a key twice in one map", () => {
    expect(msgpackProblem(withEntry({ ping: {} }, [0x01, 0x01]))).toMatch(/not a string/);
    expect(msgpackProblem(withEntry({ ping: {}, x: 1 }, [...str("x"), 0x02]))).toMatch(/twice/);
  });

  it("finds bytes after the map and a truncated frame", () => {
    expect(msgpackProblem(Uint8Array.from([...pack({ ping: {} }), 0x00]))).toMatch(/after/);
    expect(msgpackProblem(pack({ ping: { nonce: 5 } }).subarray(0, 4))).toMatch(/truncated/);
  });
});
