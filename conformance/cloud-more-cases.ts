/**
 * More cases for a cloud under test: the handshake, credentials and bindings
 * (§2, §10, §12, in cloud-binding-cases.ts), then codec details (§9), limits
 * (§11) and request rules that need several connections or timing (§2, §5, §6).
 */
import { fittedPrompt } from "./prompt-room.js";
import { Unpackr } from "msgpackr";
import type { Case } from "./case.js";
import { BINDING_CLOUD_CASES } from "./cloud-binding-cases.js";
import {
  answerIds,
  checkServed,
  collectToEnd,
  expectConnectionError,
  expectEnd,
  expectRequestFails,
  expectThat,
  helloFrame,
  kvModel,
  kvPrefill,
  prefill,
  refinementOffered,
  startHeldRequest,
  startStreaming,
} from "./cloud-helpers.js";
import { field, isClose, NotOffered, requestIdOf, type Probe } from "./probe.js";
import { encodeDevice, render, type Frame } from "./wire.js";
import { walkMsgpack } from "./msgpack-walk.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const REQUEST_CLOUD_CASES: Case[] = [
  {
    id: "cloud.codec.msgpack-types",
    title: "writes MessagePack bytes as bin, 64-bit integers as integers, and no extension types",
    role: "cloud",
    codecs: ["msgpack"],
    requirements: ["PDD-CODEC-005", "PDD-CODEC-006", "PDD-CODEC-009"],
    async run(p) {
      await p.hello();
      p.send({ ping: { nonce: "9007199254740993", sentAtUs: "1" } }); // 2^53 + 1: exact only as an integer
      await p.until((f) => f.body === "pong", "Pong");
      p.send(prefill(1, { cloudTokenBudget: 3 }));
      await p.collect(1);
      const unpack = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "bigint" });
      for (const raw of p.raw) {
        const { ext, types } = walkMsgpack(raw);
        expectThat(ext === undefined, "no MessagePack extension types (PDD-CODEC-009)", String(ext));
        for (const [path, kind] of types) {
          if (/(Fingerprint|piece|data|imageSha256)$/.test(path))
            expectThat(kind === "bin", `bytes at ${path} written as bin (PDD-CODEC-005)`, kind);
          if (/(nonce|pingSentAtUs|receivedAtUs|kvBytesSent|kvTotalBytes|offset|totalBytes)$/.test(path))
            expectThat(kind === "int", `the 64-bit ${path} written as an integer (PDD-CODEC-006)`, kind);
        }
        const v = unpack.unpack(raw) as { pong?: { nonce?: bigint | number } };
        if (v.pong)
          expectThat(
            BigInt(v.pong.nonce ?? 0) === 9007199254740993n,
            "the nonce 2^53+1 echoed exactly (PDD-CODEC-006)",
            String(v.pong.nonce),
          );
      }
    },
  },
  {
    id: "cloud.codec.msgpack-two-members",
    title: "rejects a MessagePack envelope that sets two bodies as MALFORMED_FRAME",
    role: "cloud",
    codecs: ["msgpack"],
    requirements: ["PDD-CODEC-009"],
    async run(p) {
      await p.hello();
      p.sendRaw({ ping: { nonce: 1 }, goodbye: {} }, "an envelope with two bodies");
      await expectConnectionError(p, "ERROR_CODE_MALFORMED_FRAME", 1, "PDD-CODEC-009");
    },
  },
  {
    id: "cloud.codec.msgpack-utf8",
    title: "rejects a MessagePack str that is not UTF-8 as MALFORMED_FRAME, as the protobuf codec does",
    role: "cloud",
    codecs: ["msgpack"],
    requirements: ["PDD-CODEC-015"],
    async run(p) {
      await p.hello();
      const bytes = encodeDevice(prefill(1, { text: "Tell me about the fox QQQQ." }), "msgpack");
      bytes[Buffer.from(bytes).indexOf("QQQQ")] = 0xff; // same length: the str header still holds
      p.sendBytes(bytes, "a PrefillRequest whose text holds the byte 0xFF");
      await expectConnectionError(p, "ERROR_CODE_MALFORMED_FRAME", 1, "PDD-CODEC-015");
    },
  },
  {
    id: "cloud.limit.device-frame-size",
    title: "sends no frame larger than the device's max_frame_bytes, cutting KV chunks to fit",
    role: "cloud",
    requirements: ["PDD-MSG-006", "PDD-LIMIT-006"],
    needs: ["kv"],
    async run(p, env) {
      const model = await kvModel(p);
      const q = await env.open();
      const LIMIT = 65_536; // the smallest a device may state (§11)
      const capabilities = { kvChunks: true, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"] };
      q.send(helloFrame(q.codec, { capabilities, deviceModel: model, maxFrameBytes: LIMIT }));
      // Kept as the probe's HelloAck: the prompt below is sized to the limits it announces.
      q.ack = await q.until((f) => f.body === "helloAck", "HelloAck");
      // No max_chunk_bytes: only the frame limit bounds the chunks.
      q.send(kvPrefill(q, 1, { repeats: 30, budget: 6, credit: 256 << 20 }));
      let big = 0;
      let chunks = 0;
      let kvBytes = 0;
      // On WebTransport, End may come before the last chunk (PDD-KV-011): read up to the bytes End counts
      // (or until the connection falls silent).
      let endCounts: number | undefined;
      while (endCounts === undefined || kvBytes < endCounts) {
        const r = await q.recv(5000);
        if (r === undefined || isClose(r)) break;
        const f = r as Frame;
        big = Math.max(big, q.sizes.get(f) ?? 0);
        if (f.body === "kvChunk") {
          chunks++;
          kvBytes += field<Uint8Array>(f, "kvChunk.data").length;
        }
        if (f.body === "end")
          endCounts = q.transport === "webtransport" ? Number(field(f, "end.usage.kvBytesSent")) || 0 : 0;
      }
      expectThat(
        big <= LIMIT,
        `every frame ≤ the device's ${LIMIT} bytes (PDD-MSG-006, PDD-LIMIT-006)`,
        `a frame of ${big} bytes`,
      );
      if (chunks === 0) throw new NotOffered("the cloud sent no KV image for this prompt");
    },
  },
  // ------------------------------------------------------------ requests
  {
    id: "cloud.sampling.greedy",
    title: "decodes greedily when temperature is 0: the same prompt gives the same tokens, on any connection",
    role: "cloud",
    requirements: ["PDD-MSG-003"],
    // Paced at 1 ms a token, so that a cloud's request-duration limit cannot cut one answer short.
    async run(p, env) {
      await p.hello();
      const text = "The owls smile at the naive fox because";
      p.send(prefill(1, { text, cloudTokenBudget: 24, targetTpotUs: 1000 }));
      p.send(
        prefill(2, {
          text,
          cloudTokenBudget: 24,
          targetTpotUs: 1000,
          sampling: { temperature: 0, topK: 40, topP: 0.9, seed: "7" },
        }),
      );
      const [a, b] = await answerIds(p, 1, 2);
      const q = await env.open();
      await q.hello();
      q.send(prefill(5, { text, cloudTokenBudget: 24, targetTpotUs: 1000 }));
      const [c] = await answerIds(q, 5);
      expectThat(
        JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(a) === JSON.stringify(c),
        "identical greedy answers (PDD-MSG-003)",
        `${JSON.stringify(a)} / ${JSON.stringify(b)} / ${JSON.stringify(c)}`,
      );
    },
  },
  {
    id: "cloud.isolation",
    title: "keeps requests apart: concurrent requests on one connection and another get exactly their own answers",
    role: "cloud",
    requirements: ["PDD-SEC-004", "PDD-CONN-012"],
    async run(p, env) {
      const prompts = ["The fox jumps over", "Naive owls smile at", "The lazy dog sleeps by"];
      await p.hello();
      const alone: number[][] = [];
      for (const [i, text] of prompts.entries()) {
        p.send(prefill(10 + i, { text, cloudTokenBudget: 12, targetTpotUs: 1000 }));
        alone.push((await answerIds(p, 10 + i))[0]!);
      }
      const q = await env.open();
      await q.hello();
      p.send(prefill(20, { text: prompts[0], cloudTokenBudget: 12, targetTpotUs: 1000 }));
      p.send(prefill(21, { text: prompts[1], cloudTokenBudget: 12, targetTpotUs: 1000 }));
      q.send(prefill(20, { text: prompts[2], cloudTokenBudget: 12, targetTpotUs: 1000 }));
      const [[x, y], [z]] = await Promise.all([answerIds(p, 20, 21), answerIds(q, 20)]);
      expectThat(
        JSON.stringify([x, y, z]) === JSON.stringify(alone),
        "each concurrent request's answer equal to its answer alone (PDD-SEC-004)",
        `${JSON.stringify([x, y, z])} vs ${JSON.stringify(alone)}`,
      );
    },
  },
  {
    id: "cloud.request.deadline",
    title: "never sends FirstToken after the request's deadline",
    role: "cloud",
    requirements: ["PDD-REQ-006"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { text: fittedPrompt(p, { repeats: 40, budget: 4 }), deadlineMs: 1 }));
      const frames = await p.collect(1);
      const ft = frames.find((f) => f.body === "firstToken");
      if (ft) {
        const us = field<number>(ft, "firstToken.queueUs") + field<number>(ft, "firstToken.prefillUs");
        expectThat(
          us <= 1000,
          "FirstToken within the 1 ms deadline by the cloud's own queue_us + prefill_us, or a refusal (PDD-REQ-006)",
          `${us} µs`,
        );
      } else {
        const err = frames.find((f) => f.body === "error");
        expectThat(
          err !== undefined && field(err, "error.code") === "ERROR_CODE_DEADLINE_EXCEEDED",
          "DEADLINE_EXCEEDED for a deadline that cannot be met (PDD-REQ-006)",
          frames.map((f) => render(f)).join("; "),
        );
      }
    },
  },
  {
    id: "cloud.progress",
    title: "takes DeviceProgress as information only: the request streams on unchanged",
    role: "cloud",
    requirements: ["PDD-MSG-007"],
    async run(p) {
      await startStreaming(p, { cloudTokenBudget: 16, targetTpotUs: 5000 });
      for (const v of [
        { prefilledTokens: 3, coveredIndex: 0, displayedIndex: 1 },
        {
          prefilledTokens: 4_000_000_000,
          coveredIndex: 999,
          displayedIndex: 999,
          prefillTokensPerS: -1,
          decodeTokensPerS: 1e30,
        },
      ]) {
        p.send({ progress: { requestId: 1, ...v } });
      }
      const { end } = await collectToEnd(p, 1);
      expectEnd(end, "END_REASON_BUDGET_EXHAUSTED", "the request served to its whole budget (PDD-MSG-007)", 16);
    },
  },
  {
    id: "cloud.goodbye.device",
    title: "after the device's Goodbye, runs a started request to its End, then closes gracefully",
    role: "cloud",
    requirements: ["PDD-CONN-015"],
    async run(p) {
      await startStreaming(p, { cloudTokenBudget: 12, targetTpotUs: 5000 });
      p.send({ goodbye: {} });
      const { end } = await collectToEnd(p, 1);
      expectEnd(end, "END_REASON_BUDGET_EXHAUSTED", "the started request run to its End (PDD-CONN-015)");
    },
  },
  {
    id: "cloud.request.max-duration",
    title: "ends a request that outlives max_request_duration_ms with TIMEOUT",
    role: "cloud",
    requirements: ["PDD-ORD-006", "PDD-MSG-014"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxRequestDurationMs") || 600_000;
      if (max > 15_000) throw new NotOffered(`max_request_duration_ms is ${max}; the case waits at most 15 s`);
      // A request paced to outlive the limit: 1 s per token, and a budget that outlives it even from a
      // cloud that sends ahead of the display at 4× its pace (the reference cloud sends at 2×: with
      // max/1000 + 8 tokens it finished inside an 8 s limit).
      const request = prefill(1, {
        cloudTokenBudget: Math.min(256, Math.ceil(max / 1000) * 4 + 8),
        targetTpotUs: 1_000_000,
      });
      await expectRequestFails(p, request, "ERROR_CODE_TIMEOUT", "PDD-ORD-006");
    },
  },
  {
    id: "cloud.cancel.queued",
    title: "drops a queued request on Cancel without prefilling it",
    role: "cloud",
    requirements: ["PDD-CANCEL-003"],
    async run(p, env) {
      const busy: Probe[] = [];
      try {
        for (let n = 0; n < 24; n++) {
          const q = n === 0 ? p : await env.open();
          if (n > 0) busy.push(q);
          const a = await startHeldRequest(q);
          if (a.body === "accepted" && field<number>(a, "accepted.queuePosition") > 0) {
            q.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED" } });
            const frames = await q.collect(1);
            expectThat(
              !frames.some((f) => f.body === "firstToken" || f.body === "tokenBatch"),
              "no token for a request cancelled in the queue (PDD-CANCEL-003)",
              frames.map((f) => f.body).join(", "),
            );
            const end = frames[frames.length - 1]!;
            expectThat(
              field(end, "end.reason") === "END_REASON_CANCELLED",
              "End CANCELLED (PDD-CANCEL-003)",
              render(end),
            );
            const usage = field<Record<string, unknown> | null>(end, "end.usage");
            expectThat(
              !usage || (Number(usage.promptTokens ?? 0) === 0 && Number(usage.prefillUs ?? 0) === 0),
              "no prefill for it: usage.prompt_tokens and prefill_us 0 (PDD-CANCEL-003)",
              JSON.stringify(usage),
            );
            return;
          }
          if (a.body !== "accepted")
            throw new NotOffered(`the cloud refused request ${n + 1} instead of queueing it (${render(a)})`);
        }
        throw new NotOffered("the cloud queued none of 24 concurrent requests");
      } finally {
        for (const q of busy) q.close();
      }
    },
  },
  {
    id: "cloud.connection.drop-frees",
    title: "frees the requests of a dropped connection: a full cloud serves a new request at once afterwards",
    role: "cloud",
    requirements: ["PDD-CONN-017"],
    async run(p, env) {
      // Fill the cloud until a request queues, then drop every connection.
      const held: Probe[] = [];
      let queued = false;
      for (let n = 0; n < 24 && !queued; n++) {
        const q = await env.open();
        held.push(q);
        const a = await startHeldRequest(q);
        if (a.body !== "accepted") break;
        queued = field<number>(a, "accepted.queuePosition") > 0;
      }
      for (const q of held) q.close();
      if (!queued)
        throw new NotOffered("the cloud queued none of 24 concurrent requests, so freeing is not observable");
      await sleep(1500); // PDD-CONN-017: SHOULD within 1 s of the loss
      p.close();
      const fresh = await env.open();
      await fresh.hello();
      fresh.send(prefill(1, { cloudTokenBudget: 2 }));
      const a = await fresh.until((f) => requestIdOf(f) === 1, "Accepted");
      expectThat(
        a.body === "accepted" && field<number>(a, "accepted.queuePosition") === 0,
        "the new request running at once: the dropped ones were freed (PDD-CONN-017)",
        render(a),
      );
    },
  },
  {
    id: "cloud.eos",
    title: "ends with EOS and the tokens sent, never sending the end-of-generation token",
    role: "cloud",
    requirements: ["PDD-MSG-010", "PDD-IDX-005"],
    async run(p) {
      await p.hello();
      // The opening of a sentence every model can finish (the generated tiny-eos model finishes it, then EOS).
      p.send(prefill(1, { text: "The quick brown fox", cloudTokenBudget: 256 }));
      const frames = await p.collect(1, 30_000);
      const { tokens } = checkServed(frames, 1, 256);
      const end = frames[frames.length - 1]!;
      if (field(end, "end.reason") !== "END_REASON_EOS")
        throw new NotOffered(`the model did not end its answer within ${tokens} tokens`);
      expectThat(
        field(end, "end.tokenCount") === tokens,
        `End EOS with token_count = the ${tokens} tokens sent (PDD-IDX-005)`,
        render(end),
      );
      const last = frames.filter((f) => f.body === "tokenBatch").pop();
      const pieces = last ? field<{ piece: Uint8Array }[]>(last, "tokenBatch.tokens") : [];
      expectThat(
        pieces.every((t) => t.piece.length > 0),
        "no empty-piece (end-of-generation) token sent (PDD-MSG-010)",
        "an empty piece",
      );
    },
  },
  {
    id: "cloud.refine.identity",
    title: "with ratio 1 keeps every token, and its text is the prompt's detokenization",
    role: "cloud",
    requirements: ["PDD-REF-003"],
    needs: ["refinement"],
    async run(p) {
      await p.hello();
      refinementOffered(p);
      const text = "Naïve owls smile 🙂 at the quick brown fox.";
      p.send(prefill(1, { text, refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 1 } }));
      const frames = await p.collect(1);
      const r = frames.find((f) => f.body === "refinedPrompt");
      if (!r) throw new NotOffered("no RefinedPrompt for ratio 1");
      expectThat(
        field(r, "refinedPrompt.keptTokens") === field(r, "refinedPrompt.originalTokens"),
        "every token kept at ratio 1",
        render(r),
      );
      const got = field<string>(r, "refinedPrompt.text");
      expectThat(
        got.trim() === text.trim(),
        `the text of all the prompt's tokens: ${JSON.stringify(text)} (PDD-REF-003)`,
        JSON.stringify(got),
      );
    },
  },
];

export const MORE_CLOUD_CASES: Case[] = [...BINDING_CLOUD_CASES, ...REQUEST_CLOUD_CASES];
