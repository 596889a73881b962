#!/usr/bin/env python3
"""Independent check of the spec's test vectors (Appendix B and C).

Written from the text of spec/appendix-b-fingerprints.md and
spec/appendix-c-tokenization.md alone, with the Python standard library
only: it shares no code with the reference implementation (TypeScript,
llama.cpp). It recomputes the fingerprints of spec.gguf and the prompt
tokens of every text in tokenization.json, and exits 1 on any difference.

    python3 spec/vectors/check.py [DIR]
"""
import hashlib
import heapq
import json
import os
import struct
import sys

# Table B-1: GGML type -> (block size in elements, block bytes).
GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18), 42: (64, 18),
}

# GGUF metadata value types: fixed-size ones as struct formats.
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def fmt(self, f):
        (v,) = struct.unpack_from(f, self.data, self.pos)
        self.pos += struct.calcsize(f)
        return v

    def string(self):
        n = self.fmt("<Q")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b  # raw bytes, never re-encoded (B.0)

    def value(self, t):
        if t == STRING:
            return self.string()
        if t == ARRAY:
            et, n = self.fmt("<I"), self.fmt("<Q")
            return [self.value(et) for _ in range(n)]
        return self.fmt(SCALAR[t])


def read_gguf(data):
    r = Reader(data)
    if r.fmt("<I") != 0x46554747:
        raise ValueError("not GGUF")
    version = r.fmt("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version}: Appendix B does not apply (PDD-FP-004)")
    n_tensors, n_kv = r.fmt("<Q"), r.fmt("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string().decode("utf-8")
        meta[key] = r.value(r.fmt("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.fmt("<Q") for _ in range(r.fmt("<I"))]
        tensors.append((name, dims, r.fmt("<I"), r.fmt("<Q")))
    align = meta.get("general.alignment", 32)
    data_start = -(-r.pos // align) * align
    return meta, tensors, data_start


def u32(n):
    return struct.pack("<I", n % 2**32)


def tokenizer_fingerprint(meta):  # B.2
    h = hashlib.sha256(b"pdd.v1/tokenizer\n")
    model = meta.get("tokenizer.ggml.model", b"")
    h.update(model + b"\0")
    tokens = meta.get("tokenizer.ggml.tokens", [])
    scores = meta.get("tokenizer.ggml.scores", [])
    types = meta.get("tokenizer.ggml.token_type", [])
    h.update(u32(len(tokens)))
    for i, t in enumerate(tokens):
        h.update(u32(len(t)) + t)
        h.update(struct.pack("<f", scores[i] if i < len(scores) else 0.0))
        h.update(struct.pack("<i", types[i] if i < len(types) else 0))
    merges = meta.get("tokenizer.ggml.merges", [])
    h.update(u32(len(merges)))
    for m in merges:
        h.update(u32(len(m)) + m)
    for key in ("bos", "eos", "padding"):
        v = meta.get(f"tokenizer.ggml.{key}_token_id")
        h.update(u32(0xFFFFFFFF if v is None else int(v)))
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    h.update(bytes([int(add_bos) if add_bos is not None else int(model == b"llama")]))
    return h.digest()


def model_fingerprint(data, meta, tensors, data_start, tok_fp):  # B.1
    if any(t not in GGML_TYPES for (_, _, t, _) in tensors):
        return hashlib.sha256(b"pdd.v1/model-file\n" + data).digest()  # PDD-FP-005
    h = hashlib.sha256(b"pdd.v1/model\n")
    h.update(tok_fp)
    for name, dims, t, offset in tensors:
        h.update(name + b"\0")
        h.update(struct.pack("<I", t))
        h.update(struct.pack("<Q", len(dims)))
        for d in dims:
            h.update(struct.pack("<Q", d))
        count = 1
        for d in dims:
            count *= d
        block, size = GGML_TYPES[t]
        start = data_start + offset
        h.update(data[start:start + count // block * size])
    return h.digest()


def tokenize(text, meta):
    """Appendix C.2, step by step: the prompt tokens of `text`, BOS included."""
    tokens = meta["tokenizer.ggml.tokens"]
    scores = meta.get("tokenizer.ggml.scores", [0.0] * len(tokens))
    by_text = {}
    for i, t in enumerate(tokens):
        if t:
            by_text[t] = i  # the highest ID wins
    out = []
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    if add_bos if add_bos is not None else meta.get("tokenizer.ggml.model") == b"llama":
        out.append(meta.get("tokenizer.ggml.bos_token_id", 1))
    if text == "":  # step 1
        return out
    if meta.get("tokenizer.ggml.add_space_prefix", True):  # steps 2-3
        text = " " + text
    text = text.replace(" ", "\u2581")  # step 4
    sym = [c.encode("utf-8") for c in text]  # step 5: symbol k is sym[k]; b"" once merged away
    nxt = list(range(1, len(sym))) + [-1]
    prv = list(range(-1, len(sym) - 1))
    heap = []

    def candidate(a, b):
        if a < 0 or b < 0:
            return
        tid = by_text.get(sym[a] + sym[b])
        if tid is not None:  # highest score first, then the lowest left number
            heapq.heappush(heap, (-scores[tid], a, b, len(sym[a]), len(sym[b])))

    for k in range(1, len(sym)):  # step 6
        candidate(k - 1, k)
    while heap:
        _, a, b, la, lb = heapq.heappop(heap)
        if len(sym[a]) != la or len(sym[b]) != lb or nxt[a] != b:
            continue  # a symbol changed since the candidate was made
        sym[a], sym[b] = sym[a] + sym[b], b""
        nxt[a] = nxt[b]
        if nxt[b] >= 0:
            prv[nxt[b]] = a
        candidate(prv[a], a)
        candidate(a, nxt[a])
    k = 0
    while k >= 0:  # step 7
        s = sym[k]
        if s in by_text:
            out.append(by_text[s])
        else:
            for byte in s:
                tid = by_text.get(f"<0x{byte:02X}>".encode(), by_text.get(bytes([byte])))
                if tid is None:
                    raise ValueError(f"cannot tokenize {text!r} (PDD-TOK-002)")
                out.append(tid)
        k = nxt[k]
    return out


def main():
    here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "fingerprints.json"), encoding="utf-8") as f:
        expected = json.load(f)
    with open(os.path.join(here, expected["file"]), "rb") as f:
        data = f.read()
    meta, tensors, data_start = read_gguf(data)
    tok_fp = tokenizer_fingerprint(meta)
    got = {
        "model_fingerprint": model_fingerprint(data, meta, tensors, data_start, tok_fp).hex(),
        "tokenizer_fingerprint": tok_fp.hex(),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
    }
    failures = [f"{k}: expected {expected[k]}, computed {v}" for k, v in got.items() if expected[k] != v]
    with open(os.path.join(here, "tokenization.json"), encoding="utf-8") as f:
        vectors = json.load(f)["vectors"]
    for v in vectors:
        ids = tokenize(v["text"], meta)
        if ids != v["ids"]:
            failures.append(f"tokens of {v['text']!r}: expected {v['ids']}, computed {ids}")
    for line in failures:
        print("FAIL", line)
    print(f"{len(got) + len(vectors) - len(failures)} of {len(got) + len(vectors)} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
