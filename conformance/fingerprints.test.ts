/**
 * The suite's Appendix B reader against the spec's vectors, and against the
 * reference engine on GGUF files built here byte by byte: K-quant tensors with
 * padding after them, a tensor type outside Table B-1, a token that is not
 * UTF-8, and files that are not GGUF v2/v3.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fingerprints } from "../engine/index.js";
import { VECTORS_DIR } from "../spec/vectors/generate.js";
import { ggufFingerprints, NotGgufV2V3 } from "./fingerprints.js";

const dir = mkdtempSync(join(tmpdir(), "pdd-fp-"));
const u32 = (v: number) => Buffer.from(Uint32Array.of(v).buffer);
const u64 = (v: number) => Buffer.from(BigUint64Array.of(BigInt(v)).buffer);
const str = (b: Buffer | string) => {
  const bytes = typeof b === "string" ? Buffer.from(b) : b;
  return Buffer.concat([u64(bytes.length), bytes]);
};

interface Tensor {
  name: string;
  type: number;
  dims: number[];
  bytes: number;
}

/** A little-endian GGUF v3 file: a llama tokenizer with `tokens`, then the tensors, each padded to 32 bytes with 0xAA. */
function gguf(name: string, tokens: Buffer[], tensors: Tensor[], version = 3): string {
  const meta = [
    Buffer.concat([str("tokenizer.ggml.model"), u32(8), str("llama")]),
    Buffer.concat([str("tokenizer.ggml.tokens"), u32(9), u32(8), u64(tokens.length), ...tokens.map(str)]),
  ];
  let offset = 0;
  const infos = tensors.map((t) => {
    const info = Buffer.concat([str(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type), u64(offset)]);
    offset += Math.ceil(t.bytes / 32) * 32;
    return info;
  });
  const head = Buffer.concat([
    Buffer.from("GGUF"),
    u32(version),
    u64(tensors.length),
    u64(meta.length),
    ...meta,
    ...infos,
  ]);
  const parts = [head, Buffer.alloc((32 - (head.length % 32)) % 32, 0xaa)];
  tensors.forEach((t, i) => {
    parts.push(Buffer.alloc(t.bytes, i + 1), Buffer.alloc((32 - (t.bytes % 32)) % 32, 0xaa));
  });
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

const TOKENS = ["<unk>", "<s>", "</s>", "▁the"].map((t) => Buffer.from(t));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("the suite's Appendix B reader", () => {
  it("gives the spec vectors' fingerprints and vocab_size for spec.gguf (PDD-FP-001, PDD-FP-002, PDD-FP-006)", () => {
    const want = JSON.parse(readFileSync(join(VECTORS_DIR, "fingerprints.json"), "utf8")) as Record<string, unknown>;
    const got = ggufFingerprints(join(VECTORS_DIR, "spec.gguf"));
    expect({ model: hex(got.model), tokenizer: hex(got.tokenizer), vocab: got.vocabSize }).toEqual({
      model: want.model_fingerprint,
      tokenizer: want.tokenizer_fingerprint,
      vocab: want.vocab_size,
    });
  });

  it("sizes every tensor by Table B-1 and hashes no padding, as the engine does (PDD-FP-001)", () => {
    const path = gguf("kquant.gguf", TOKENS, [
      { name: "q4k", type: 12, dims: [256], bytes: 144 },
      { name: "iq4nl", type: 20, dims: [32, 2], bytes: 36 },
      { name: "f32", type: 0, dims: [3], bytes: 12 },
    ]);
    const suite = ggufFingerprints(path);
    const engine = fingerprints(path);
    expect(hex(engine.model)).toBe(hex(suite.model));
    expect(hex(engine.tokenizer)).toBe(hex(suite.tokenizer));
  });

  it("hashes a file with a type outside Table B-1 whole, under pdd.v1/model-file (PDD-FP-005)", () => {
    const path = gguf("withdrawn.gguf", TOKENS, [{ name: "q4_2", type: 4, dims: [32], bytes: 20 }]);
    const whole = createHash("sha256").update("pdd.v1/model-file\n").update(readFileSync(path)).digest("hex");
    expect(hex(ggufFingerprints(path).model)).toBe(whole);
    expect(hex(fingerprints(path).model)).toBe(whole);
  });

  it("hashes token strings as stored, invalid UTF-8 included (Appendix B.0)", () => {
    const path = gguf(
      "bytes.gguf",
      [...TOKENS, Buffer.from([0xff, 0x41])],
      [{ name: "f", type: 0, dims: [1], bytes: 4 }],
    );
    const suite = ggufFingerprints(path);
    expect(suite.vocabSize).toBe(5);
    expect(hex(fingerprints(path).tokenizer)).toBe(hex(suite.tokenizer));
  });

  it("computes nothing for a GGUF other than v2/v3 or a big-endian one (PDD-FP-004)", () => {
    const v1 = gguf("v1.gguf", TOKENS, [], 1);
    const bigEndian = gguf("be.gguf", TOKENS, [], 0x03000000);
    for (const path of [v1, bigEndian]) {
      expect(() => ggufFingerprints(path)).toThrow(NotGgufV2V3);
      expect(() => fingerprints(path)).toThrow(/GGUF version/);
    }
  });
});
