/**
 * Cases for a cloud under test, continued from cloud-cases.ts: what frames
 * carry. Undecodable, oversize and unknown frames (§9), KV images (§7),
 * refinement (§8), limits (§11) and codec details.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { Packr } from "msgpackr";
import type { Case } from "./case.js";
import {
  checkServed,
  expectConnectionError,
  expectOnlyPong,
  expectRequestFails,
  expectThat,
  kvOffered,
  kvPrefill,
  kvSession,
  prefill,
  refinementOffered,
} from "./cloud-helpers.js";
import { field, requestIdOf } from "./probe.js";
import { render, type Frame } from "./wire.js";

/** A device model no cloud serves: its fingerprints are 32 bytes of `fill` and `fill` + 1. */
const foreignModel = (fill: number) => ({
  name: "another",
  modelFingerprint: Buffer.alloc(32, fill),
  tokenizerFingerprint: Buffer.alloc(32, fill + 1),
});

export const PAYLOAD_CASES: Case[] = [
  {
    id: "cloud.malformed",
    title: "treats an undecodable frame as a MALFORMED_FRAME connection error",
    role: "cloud",
    requirements: ["PDD-CODEC-001", "PDD-CONN-016", "PDD-SEC-005", "PDD-WS-004", "PDD-GRPC-003", "PDD-WT-004"],
    async run(p) {
      await p.hello();
      p.sendBytes(
        p.codec === "proto" ? Uint8Array.of(0x12, 0xff, 0xff, 0xff) : Uint8Array.of(0xdc, 0xff),
        "a truncated frame",
      );
      await expectConnectionError(p, "ERROR_CODE_MALFORMED_FRAME", 1, "PDD-CODEC-001");
    },
  },
  {
    id: "cloud.oversize",
    title: "refuses a frame over its maximum frame size with FRAME_TOO_LARGE",
    role: "cloud",
    requirements: ["PDD-LIMIT-001", "PDD-WS-003", "PDD-GRPC-004"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxFrameBytes") || 4 << 20;
      p.send(prefill(1, { text: "x".repeat(max + 1024) }));
      await expectConnectionError(p, "ERROR_CODE_FRAME_TOO_LARGE", 2, "PDD-LIMIT-001");
    },
  },
  {
    id: "cloud.unknown-fields",
    title: "ignores fields it does not know",
    role: "cloud",
    requirements: ["PDD-VER-005"],
    async run(p) {
      await p.hello();
      if (p.codec === "proto") {
        const { encodeDevice } = await import("./wire.js");
        const known = encodeDevice(prefill(1), "proto");
        // Inside the PrefillRequest (field 2): add field 1000 (varint) to its body.
        const inner = known.subarray(2 + (known[1]! >= 0x80 ? 1 : 0));
        const extra = Uint8Array.of(0xc0, 0x3e, 0x01);
        const body = Uint8Array.from([...inner, ...extra]);
        p.sendBytes(Uint8Array.from([0x12, body.length, ...body]), "a PrefillRequest with unknown field 1000");
      } else {
        p.sendBytes(
          new Packr({ useRecords: false }).pack({
            prefillRequest: {
              requestId: 1,
              text: "Tell me about the fox.",
              cloudTokenBudget: 4,
              fieldFromTheFuture: [1, 2],
            },
          }),
          "a PrefillRequest with an unknown key",
        );
      }
      checkServed(await p.collect(1), 1, 4);
    },
  },
  {
    id: "cloud.unknown-body",
    title: "ignores a frame with no body",
    role: "cloud",
    requirements: ["PDD-VER-006"],
    async run(p) {
      await p.hello();
      p.sendBytes(
        p.codec === "proto"
          ? new Uint8Array(0)
          : new Packr({ useRecords: false }).pack({ messageFromTheFuture: { x: 1 } }),
        "an envelope with no known body",
      );
      await expectOnlyPong(p, "the empty frame ignored, no error (PDD-VER-006)");
    },
  },
  {
    id: "cloud.kv.foreign-model",
    title: "refuses KV for a device with another model fingerprint, and serves the request",
    role: "cloud",
    requirements: ["PDD-KV-001", "PDD-MSG-008"],
    needs: ["kv"],
    async run(p) {
      await p.hello({ deviceModel: foreignModel(7) });
      kvOffered(p);
      p.send(prefill(1, { kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", initialCreditBytes: "1048576" } }));
      const frames = await p.collect(1);
      expectThat(
        field(frames[0]!, "accepted.kv.granted") === false &&
          field(frames[0]!, "accepted.kv.refusal") === "ERROR_CODE_MODEL_MISMATCH",
        "Accepted.kv refused with MODEL_MISMATCH (PDD-KV-001)",
        render(frames[0]!),
      );
      expectThat(!frames.some((f) => f.body === "kvChunk"), "no KvChunk after a refusal", "KV chunks");
      checkServed(frames, 1, 4);
    },
  },
  {
    id: "cloud.kv.stream",
    title: "streams a KV image in order, CRC-32 on every chunk, SHA-256 on the last, within the granted credit",
    role: "cloud",
    requirements: ["PDD-KV-004", "PDD-KV-005", "PDD-KV-006", "PDD-KV-008", "PDD-KV-010", "PDD-KV-012", "PDD-KV-014"],
    needs: ["kv"],
    async run(p, env) {
      const q = await kvSession(p, env);
      // Not a power of two, and above the 4,096-byte minimum (PDD-KV-014): honoured exactly.
      const CHUNK = 5000;
      const credit = 2 * CHUNK;
      q.send(kvPrefill(q, 1, { repeats: 20, budget: 24, maxChunkBytes: CHUNK, credit }));
      const accepted = await q.until((f) => requestIdOf(f) === 1, "Accepted");
      expectThat(
        accepted.body === "accepted" && field(accepted, "accepted.kv.granted") === true,
        "KV granted for the same model (PDD-KV-001)",
        render(accepted),
      );
      const promptTokens = field<number>(accepted, "accepted.promptTokens");
      const kv: KvProgress = { received: 0, total: -1, credit, sha: undefined, parts: [] };
      let end: Frame | undefined;
      // On WebTransport, End may come before the last chunks (PDD-KV-011): read on to the bytes End counts.
      const owed = (e: Frame) =>
        q.transport === "webtransport" ? Number(field(e, "end.usage.kvBytesSent")) - kv.received : 0;
      while (!end || owed(end) > 0) {
        const f = await q.until((x) => requestIdOf(x) === 1, "KV chunks and End", 15_000);
        if (f.body === "end") end = f;
        if (f.body !== "kvChunk") continue;
        const size = checkKvChunk(f.kvChunk as Record<string, unknown>, kv, CHUNK, promptTokens);
        // Return the credit as we consume, as a device should (PDD-KV-009).
        kv.credit += size;
        q.send({ kvCredit: { requestId: 1, bytes: String(size) } });
      }
      expectThat(kv.total > 0, "a KV image announced by its total_bytes (PDD-KV-004)", String(kv.total));
      // A cloud may abandon a transfer (§4.2: "finished or abandoned"), for one
      // an image too big to send within its grace; End then says what was sent.
      if (kv.received === kv.total)
        expectThat(
          kv.sha !== undefined && sha256(Buffer.concat(kv.parts)).equals(Buffer.from(kv.sha)),
          "the image's SHA-256 on the last chunk (PDD-KV-006)",
          "a different digest",
        );
      expectThat(
        Number(field(end, "end.usage.kvBytesSent")) === kv.received,
        `usage.kv_bytes_sent = ${kv.received} (PDD-KV-010)`,
        String(field(end, "end.usage.kvBytesSent")),
      );
      q.close();
    },
  },
  {
    id: "cloud.refine",
    title: "sends a refined prompt once, before tokens end, with ascending spans and consistent counts",
    role: "cloud",
    requirements: ["PDD-REF-001", "PDD-REF-002", "PDD-ORD-005"],
    needs: ["refinement"],
    async run(p) {
      await p.hello();
      refinementOffered(p);
      p.send(
        prefill(1, {
          text: "The quick brown fox jumps over the lazy dog and the owls smile at every visitor.",
          refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.5 },
        }),
      );
      const frames = await p.collect(1);
      const refined = frames.filter((f) => f.body === "refinedPrompt");
      expectThat(field(frames[0]!, "accepted.refine.granted") === true, "refinement granted", render(frames[0]!));
      expectThat(refined.length === 1, "exactly one RefinedPrompt (PDD-ORD-005)", `${refined.length}`);
      const r = refined[0]!;
      const kept = field<{ start: number; end: number }[]>(r, "refinedPrompt.kept");
      const original = field<number>(r, "refinedPrompt.originalTokens");
      let sum = 0;
      let last = -1;
      for (const s of kept) {
        expectThat(
          s.start > last && s.end > s.start && s.end <= original,
          "ascending, disjoint, non-adjacent, non-empty spans within the prompt (PDD-REF-002)",
          JSON.stringify(kept),
        );
        last = s.end;
        sum += s.end - s.start;
      }
      expectThat(
        sum === field<number>(r, "refinedPrompt.keptTokens"),
        "kept_tokens = the sum of the spans (PDD-REF-002)",
        `${sum} vs ${field(r, "refinedPrompt.keptTokens")}`,
      );
      expectThat(
        Math.abs(field<number>(r, "refinedPrompt.ratio") - sum / original) < 1e-6,
        "ratio = kept/original (PDD-REF-002)",
        String(field(r, "refinedPrompt.ratio")),
      );
      checkServed(
        frames.filter((f) => f.body !== "refinedPrompt"),
        1,
        4,
      );
    },
  },
  {
    id: "cloud.request.prompt-too-long",
    title: "refuses a prompt over max_prompt_tokens with PROMPT_TOO_LONG, before any prefill",
    role: "cloud",
    requirements: ["PDD-LIMIT-003", "PDD-CONN-009"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxPromptTokens");
      expectThat(max > 0, "HelloAck.limits.max_prompt_tokens set (PDD-CONN-009)", String(max));
      // Every word is at least one token.
      const text = Array.from({ length: max + 16 }, (_, i) => `w${i}`).join(" ");
      await expectRequestFails(p, prefill(1, { text }), "ERROR_CODE_PROMPT_TOO_LONG", "PDD-LIMIT-003");
    },
  },
  {
    id: "cloud.request.token-ids-foreign",
    title: "refuses a token-ID prompt from a device with another tokenizer with TOKENIZER_MISMATCH",
    role: "cloud",
    requirements: ["PDD-REQ-002"],
    async run(p) {
      await p.hello({ deviceModel: foreignModel(1) });
      const request = { prefillRequest: { requestId: 1, tokens: { ids: [1, 2, 3] }, cloudTokenBudget: 4 } };
      await expectRequestFails(p, request, "ERROR_CODE_TOKENIZER_MISMATCH", "PDD-REQ-002");
    },
  },
  {
    id: "cloud.request.concurrency-limit",
    title: "refuses the request over max_concurrent_requests alone, retryable, and serves the others",
    role: "cloud",
    requirements: ["PDD-LIMIT-004", "PDD-LIMIT-005", "PDD-ERR-002"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxConcurrentRequests") || 8;
      for (let id = 1; id <= max + 1; id++) p.send(prefill(id, { cloudTokenBudget: 256, targetTpotUs: 50000 }));
      let refused: Frame | undefined;
      let accepted = 0;
      while (!refused || accepted < max) {
        const f = await p.until(
          (x) => x.body === "accepted" || x.body === "error",
          `${max} Accepted and one RESOURCE_EXHAUSTED`,
        );
        if (f.body === "accepted") accepted++;
        else refused = f;
      }
      expectThat(
        field(refused, "error.code") === "ERROR_CODE_RESOURCE_EXHAUSTED",
        "RESOURCE_EXHAUSTED for the request over the limit (PDD-LIMIT-004)",
        render(refused),
      );
      expectThat(
        field(refused, "error.retryable") === true,
        "retryable RESOURCE_EXHAUSTED (PDD-ERR-002)",
        render(refused),
      );
      expectThat(
        field<number>(refused, "error.requestId") === max + 1,
        `the refusal for request ${max + 1} alone (PDD-LIMIT-005)`,
        render(refused),
      );
      for (let id = 1; id <= max; id++) p.send({ cancel: { requestId: id, code: "ERROR_CODE_CANCELLED" } });
    },
  },
  {
    id: "cloud.codec.field-order",
    title: "accepts a protobuf frame whose fields come in another order",
    role: "cloud",
    requirements: ["PDD-CODEC-003"],
    codecs: ["proto"],
    async run(p) {
      await p.hello();
      // PrefillRequest fields in descending number order: budget (6), text (2), request_id (1).
      const text = Buffer.from("Tell me about the fox.");
      const inner = Buffer.from([0x30, 4, 0x12, text.length, ...text, 0x08, 1]);
      p.sendBytes(Uint8Array.from([0x12, inner.length, ...inner]), "a PrefillRequest with fields in reverse order");
      checkServed(await p.collect(1), 1, 4);
    },
  },
  {
    id: "cloud.codec.msgpack-names",
    title: "accepts MessagePack with proto field names and enums as integers",
    role: "cloud",
    requirements: ["PDD-CODEC-007", "PDD-CODEC-008", "PDD-CODEC-004"],
    codecs: ["msgpack"],
    async run(p) {
      const packr = new Packr({ useRecords: false });
      p.sendBytes(
        packr.pack({ hello: { versions: [{ major: 1, minor: 0 }], codecs: [2] } }),
        "a Hello with codecs as integers",
      );
      const ack = await p.until(() => true, "HelloAck");
      expectThat(ack.body === "helloAck", "HelloAck for a Hello with integer enums (PDD-CODEC-007)", render(ack));
      p.sendBytes(
        packr.pack({ prefill_request: { request_id: 1, text: "Tell me about the fox.", cloud_token_budget: 4 } }),
        "a PrefillRequest with proto field names",
      );
      checkServed(await p.collect(1), 1, 4);
    },
  },
];

function sha256(b: Uint8Array): Buffer {
  return createHash("sha256").update(b).digest();
}

/** What a KV transfer has shown so far (cloud.kv.stream). */
interface KvProgress {
  received: number;
  /** total_bytes of the first chunk; -1 before it. */
  total: number;
  /** Credit granted so far, initial plus returned. */
  credit: number;
  sha: Uint8Array | undefined;
  parts: Uint8Array[];
}

/** Checks one KvChunk (PDD-KV-004/005/006/008/012), records it in `kv` and returns its size. */
function checkKvChunk(c: Record<string, unknown>, kv: KvProgress, chunkBytes: number, promptTokens: number): number {
  const data = c.data as Uint8Array;
  expectThat(Number(c.offset) === kv.received, `chunk at offset ${kv.received} (PDD-KV-004)`, String(c.offset));
  expectThat(
    data.length > 0 && data.length <= chunkBytes,
    `a non-empty chunk of at most the ${chunkBytes} bytes asked (PDD-KV-005, PDD-KV-014)`,
    String(data.length),
  );
  expectThat(
    crc32(data) === Number(c.crc32),
    "CRC-32 of the chunk's data (PDD-KV-006)",
    `${c.crc32} vs ${crc32(data)}`,
  );
  expectThat(
    kv.received + data.length <= kv.credit,
    `no more than the ${kv.credit} bytes of credit granted (PDD-KV-008)`,
    String(kv.received + data.length),
  );
  expectThat(
    Number(c.tokenCount) >= promptTokens,
    "token_count covering at least the prompt (PDD-KV-012)",
    `${c.tokenCount} < ${promptTokens}`,
  );
  if (kv.total >= 0)
    expectThat(
      Number(c.totalBytes) === kv.total,
      "the same total_bytes on every chunk (PDD-KV-004)",
      String(c.totalBytes),
    );
  kv.total = Number(c.totalBytes);
  kv.parts.push(data);
  kv.received += data.length;
  const last = kv.received === kv.total;
  const hasSha = (c.imageSha256 as Uint8Array).length > 0;
  expectThat(last === hasSha, "image_sha256 on the last chunk only (PDD-KV-006)", `last=${last} sha=${hasSha}`);
  if (hasSha) kv.sha = c.imageSha256 as Uint8Array;
  return data.length;
}
