/**
 * More cases for a cloud under test: the bindings (§10), credentials (§12),
 * codec details (§9), limits (§11) and request rules that need several
 * connections or timing (§2, §5, §6).
 */
import { fittedPrompt } from "./prompt-room.js";
import { Unpackr } from "msgpackr";
import type { Case } from "./case.js";
import {
  checkServed,
  closeCarries,
  expectConnectionError,
  expectRequestError,
  expectThat,
  kvModel,
  prefill,
} from "./cloud-cases.js";
import { CheckFailure, field, isClose, NotOffered, requestIdOf, type Probe } from "./probe.js";
import { ggufFingerprints } from "./fingerprints.js";
import { Refused, type RawSession } from "./raw-client.js";
import { decodeCloud, encodeDevice, render, type Frame } from "./wire.js";
import { walkMsgpack } from "./msgpack-walk.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Token IDs of each of `ids`' answers, read concurrently up to every End. */
async function answerIds(p: Probe, ...ids: number[]): Promise<number[][]> {
  const frames = new Map<number, Frame[]>(ids.map((id) => [id, []]));
  let open = ids.length;
  while (open > 0) {
    const f = await p.until(
      (x) => frames.has(requestIdOf(x) ?? -1),
      `frames of requests ${ids.join(", ")} up to their End (PDD-ORD-003)`,
    );
    frames.get(requestIdOf(f)!)!.push(f);
    if (f.body === "end") open--;
  }
  return ids.map((id) => {
    const fs = frames.get(id)!;
    checkServed(fs, id, 1 << 20);
    return fs.flatMap((f) =>
      f.body === "firstToken"
        ? [field<number>(f, "firstToken.token.id")]
        : f.body === "tokenBatch"
          ? field<{ id: number }[]>(f, "tokenBatch.tokens").map((t) => t.id)
          : [],
    );
  });
}

/** The next frame or close of a raw session, skipping nothing. */
async function rawClose(s: RawSession, ms: number): Promise<{ code: number; reason: string } | "frame" | undefined> {
  const v = await s.next(ms);
  if (v === undefined) return undefined;
  return v instanceof Uint8Array ? "frame" : v;
}

export const MORE_CLOUD_CASES: Case[] = [
  {
    id: "cloud.fingerprints",
    title: "announces the Appendix B fingerprints of its model file",
    role: "cloud",
    // PDD-FP-004/005: the suite computes B.1 only for GGUF v2/v3, and hashes a file with a type outside Table B-1 whole.
    requirements: ["PDD-FP-001", "PDD-FP-002", "PDD-FP-004", "PDD-FP-005", "PDD-FP-006", "PDD-CONN-010"],
    async run(p, env) {
      if (!env.modelFile)
        throw new NotOffered("give the suite the cloud's model file (--model FILE) to check its fingerprints");
      const want = ggufFingerprints(env.modelFile);
      await p.hello();
      const m = field<Record<string, Uint8Array>>(p.ack!, "helloAck.cloudModel");
      expectThat(
        Buffer.from(m.tokenizerFingerprint ?? []).equals(want.tokenizer),
        `tokenizer_fingerprint ${want.tokenizer.toString("hex")} (PDD-FP-002)`,
        Buffer.from(m.tokenizerFingerprint ?? []).toString("hex"),
      );
      expectThat(
        Buffer.from(m.modelFingerprint ?? []).equals(want.model),
        `model_fingerprint ${want.model.toString("hex")} (PDD-FP-001, PDD-FP-005)`,
        Buffer.from(m.modelFingerprint ?? []).toString("hex"),
      );
      expectThat(
        Number(m.vocabSize) === want.vocabSize,
        `vocab_size ${want.vocabSize}, the entries of tokenizer.ggml.tokens (PDD-FP-006)`,
        String(m.vocabSize),
      );
    },
  },
  // ------------------------------------------------------------ handshake, credentials
  {
    id: "cloud.handshake.timeout",
    title: "closes a connection that sends no Hello within its handshake timeout with TIMEOUT",
    role: "cloud",
    requirements: ["PDD-CONN-006"],
    async run(p) {
      // Nothing is sent. The default timeout is 10 s (§11); a cloud may use less.
      await expectConnectionError(p, "ERROR_CODE_TIMEOUT", 19, "PDD-CONN-006", p.transport, 13_000);
    },
  },
  {
    id: "cloud.auth.refused",
    title: "refuses a missing or wrong credential before HelloAck, the same way for both",
    role: "cloud",
    requirements: ["PDD-CONN-011", "PDD-SEC-003", "PDD-WS-006", "PDD-WT-005"],
    async run(p, env) {
      p.close();
      if (!env.target.token)
        throw new NotOffered("give the suite a credential (--token) to test a cloud that requires one");
      const refusals: string[] = [];
      for (const token of [null, `${env.target.token}x`, "pdd-conformance-no-such-key"] as const) {
        let s: RawSession;
        try {
          s = await env.target.raw({ token });
        } catch (e) {
          if (e instanceof Refused) {
            expectThat(
              env.target.transport === "websocket" && e.status === 401,
              "HTTP 401 for a refused WebSocket upgrade (PDD-WS-006)",
              `HTTP ${e.status} on ${env.target.transport}`,
            );
            refusals.push(`HTTP ${e.status}`);
            continue;
          }
          throw e;
        }
        try {
          // A Hello that also carries the credential in the frame, as a browser would.
          s.send(
            encodeDevice(
              {
                hello: {
                  versions: [{ major: 1, minor: 0 }],
                  codecs: [env.target.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"],
                  authToken: token ?? "",
                },
              },
              env.target.codec,
            ),
          );
          for (;;) {
            const v = await s.next(5000);
            if (v === undefined)
              throw new CheckFailure(
                "the connection refused with UNAUTHENTICATED (PDD-CONN-011)",
                `nothing within 5 s (token ${token === null ? "missing" : "wrong"})`,
              );
            if (v instanceof Uint8Array) {
              const f = decodeCloud(v, env.target.codec);
              expectThat(f.body !== "helloAck", "no HelloAck for a refused credential (PDD-CONN-011)", render(f));
              if (f.body === "error") {
                expectThat(
                  field(f, "error.code") === "ERROR_CODE_UNAUTHENTICATED",
                  "UNAUTHENTICATED (PDD-CONN-011)",
                  render(f),
                );
                refusals.push(`Error ${field(f, "error.message")}`);
              }
              continue;
            }
            expectThat(
              closeCarries(env.target.transport, v.code, 6),
              `a close carrying UNAUTHENTICATED (PDD-CONN-011${env.target.transport === "webtransport" ? ", PDD-WT-005" : ""})`,
              `close ${v.code} ${v.reason}`,
            );
            refusals.push(`close ${v.code} ${v.reason}`);
            break;
          }
        } finally {
          s.close();
        }
      }
      // A near miss and an unknown token must look alike: nothing tells whether a token exists (PDD-SEC-003).
      const [, nearMiss, unknown] = refusals.filter((x) => !x.startsWith("Error"));
      expectThat(
        nearMiss === unknown,
        "the same refusal for a near-miss and an unknown credential (PDD-SEC-003)",
        `${nearMiss} | ${unknown}`,
      );
    },
  },
  {
    id: "cloud.hello.64k",
    title: "accepts a Hello of nearly 64 KiB before the HelloAck",
    role: "cloud",
    requirements: ["PDD-LIMIT-002"],
    async run(p) {
      p.send({
        hello: {
          versions: [{ major: 1, minor: 0 }],
          codecs: [p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"],
          clientName: "x".repeat(60 * 1024),
        },
      });
      const f = await p.until(() => true, "HelloAck to a 60 KiB Hello (PDD-LIMIT-002)");
      expectThat(f.body === "helloAck", "HelloAck to a 60 KiB Hello (PDD-LIMIT-002)", render(f));
    },
  },
  // ------------------------------------------------------------ bindings
  {
    id: "cloud.ws.subprotocol",
    title: "refuses a WebSocket upgrade without a pdd subprotocol, and selects exactly one offered",
    role: "cloud",
    transports: ["websocket"],
    requirements: ["PDD-WS-001"],
    async run(p, env) {
      expectThat(
        p.session.protocol === `pdd.v1.${p.codec}`,
        `the offered subprotocol pdd.v1.${p.codec} selected (PDD-WS-001)`,
        String(p.session.protocol),
      );
      for (const protocols of [[], ["chat", "pdd.v2.proto"]]) {
        try {
          const s = await env.target.raw({ protocols });
          s.close();
          throw new CheckFailure(
            `a refused upgrade for subprotocols ${JSON.stringify(protocols)} (PDD-WS-001)`,
            `accepted with "${s.protocol}"`,
          );
        } catch (e) {
          if (e instanceof CheckFailure) throw e;
          expectThat(
            e instanceof Refused && e.status === 400,
            `HTTP 400 for subprotocols ${JSON.stringify(protocols)} (PDD-WS-001)`,
            (e as Error).message,
          );
        }
      }
    },
  },
  {
    id: "cloud.ws.text-message",
    title: "treats a WebSocket text message as MALFORMED_FRAME",
    role: "cloud",
    transports: ["websocket"],
    requirements: ["PDD-WS-002", "PDD-WS-004"],
    async run(p) {
      await p.hello();
      p.session.sendText!('{"ping":{}}');
      await expectConnectionError(p, "ERROR_CODE_MALFORMED_FRAME", 1, "PDD-WS-002");
    },
  },
  {
    id: "cloud.grpc.identity",
    title: "does not compress gRPC messages, though the client accepts gzip",
    role: "cloud",
    transports: ["grpc"],
    requirements: ["PDD-GRPC-005"],
    async run(p, env) {
      p.close();
      const hello = encodeDevice(
        { hello: { versions: [{ major: 1, minor: 0 }], codecs: ["CODEC_PROTO"], clientName: "pdd-conformance/0.1.0" } },
        "proto",
      );
      const h = await env.target.grpcHeaders!(hello, "gzip, identity");
      const enc = h["grpc-encoding"];
      expectThat(
        enc === undefined || enc === "identity",
        "grpc-encoding identity or absent for a client that accepts gzip (PDD-GRPC-005)",
        String(enc),
      );
    },
  },
  {
    id: "cloud.wt.codec-param",
    title: "closes a WebTransport session with an unknown codec parameter with UNSUPPORTED_CODEC",
    role: "cloud",
    transports: ["webtransport"],
    codecs: ["proto"],
    requirements: ["PDD-WT-001", "PDD-WT-004"],
    async run(p, env) {
      p.close();
      const s = await env.target.raw({ codecParam: "json" });
      try {
        const r = await rawClose(s, 5000);
        expectThat(
          r !== undefined && r !== "frame" && r.code === 4,
          "the session closed with code 4 UNSUPPORTED_CODEC (PDD-WT-001)",
          JSON.stringify(r),
        );
      } finally {
        s.close();
      }
    },
  },
  {
    id: "cloud.wt.streams",
    title: "on WebTransport, opens no bidirectional stream and sends KV only on its own unidirectional stream",
    role: "cloud",
    transports: ["webtransport"],
    requirements: ["PDD-WT-002", "PDD-WT-003"],
    needs: ["kv"],
    async run(p, env) {
      const model = await kvModel(p);
      const q = await env.open();
      await q.hello({ deviceModel: model });
      q.send(
        prefill(1, {
          text: fittedPrompt(q, { repeats: 8, budget: 8 }),
          cloudTokenBudget: 8,
          kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: 4096, initialCreditBytes: String(64 << 20) },
        }),
      );
      let chunks = 0;
      let kvBytes = 0;
      let cause = ""; // why no chunk could come, to name in a failure
      for (;;) {
        const f = await q.until((x) => requestIdOf(x) === 1, "the request's frames");
        cause ||= whyNoKv(f);
        const uni = q.fromUni.has(f);
        expectThat(
          uni === (f.body === "kvChunk"),
          "KvChunk frames on the KV stream and every other frame on the control stream (PDD-WT-002, PDD-WT-003)",
          `${f.body} on the ${uni ? "KV" : "control"} stream`,
        );
        if (f.body === "kvChunk") {
          chunks++;
          kvBytes += field<Uint8Array>(f, "kvChunk.data").length;
        }
        if (f.body === "end") {
          const bytes = Number(field(f, "end.usage.kvBytesSent"));
          // End may come before the last chunk (PDD-KV-011): read the rest, up to the bytes End counts
          // (or until the stream falls silent).
          while (kvBytes < bytes) {
            const r = await q.recv(300);
            if (r === undefined || isClose(r)) break;
            if ((r as Frame).body === "kvChunk") {
              chunks++;
              kvBytes += field<Uint8Array>(r as Frame, "kvChunk.data").length;
              expectThat(q.fromUni.has(r as Frame), "KvChunk on the KV stream (PDD-WT-003)", "on the control stream");
            }
          }
          break;
        }
      }
      expectThat(chunks > 0, "a KV image for a granted request", `no KvChunk${cause && `: ${cause}`}`);
      expectThat(
        (q.session.peerBidiStreams?.() ?? 0) === 0,
        "no bidirectional stream opened by the cloud (PDD-WT-002)",
        `${q.session.peerBidiStreams?.()} streams`,
      );
    },
  },
  {
    id: "cloud.frame.length-over-limit",
    title: "refuses a length prefix over its limit before the payload arrives (FRAME_TOO_LARGE)",
    role: "cloud",
    transports: ["webtransport"],
    requirements: ["PDD-CODEC-010"],
    async run(p) {
      await p.hello();
      const h = Buffer.alloc(4);
      h.writeUInt32BE(0x7fff_ffff); // 2 GiB announced; no payload follows
      p.session.sendUnframed!(h);
      await expectConnectionError(p, "ERROR_CODE_FRAME_TOO_LARGE", 2, "PDD-CODEC-010");
    },
  },
  {
    id: "cloud.frame.truncated-stream",
    title: "treats a control stream that ends inside a frame as MALFORMED_FRAME",
    role: "cloud",
    transports: ["webtransport"],
    requirements: ["PDD-CODEC-011"],
    async run(p) {
      await p.hello();
      const h = Buffer.alloc(4);
      h.writeUInt32BE(100);
      p.session.sendUnframed!(Buffer.concat([h, Buffer.alloc(10)]));
      p.session.endControl!();
      await expectConnectionError(p, "ERROR_CODE_MALFORMED_FRAME", 1, "PDD-CODEC-011");
    },
  },
  {
    id: "cloud.transport.order",
    title: "answers 300 pings in a burst in order: the control stream is reliable and ordered",
    role: "cloud",
    requirements: ["PDD-TRANSPORT-001", "PDD-CONN-019"],
    async run(p) {
      await p.hello();
      for (let n = 1; n <= 300; n++) p.send({ ping: { nonce: String(n), sentAtUs: String(n * 1000) } });
      for (let n = 1; n <= 300; n++) {
        const f = await p.until(() => true, `Pong ${n}`);
        expectThat(
          f.body === "pong" && field(f, "pong.nonce") === String(n),
          `Pong ${n}, in order (PDD-TRANSPORT-001)`,
          render(f),
        );
      }
    },
  },
  // ------------------------------------------------------------ codec details
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
      q.send({
        hello: {
          versions: [{ major: 1, minor: 0 }],
          codecs: [q.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"],
          capabilities: { kvChunks: true, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"] },
          deviceModel: model,
          maxFrameBytes: LIMIT,
        },
      });
      await q.until((f) => f.body === "helloAck", "HelloAck");
      // No max_chunk_bytes: only the frame limit bounds the chunks.
      q.send(
        prefill(1, {
          text: fittedPrompt(q, { repeats: 30, budget: 6 }),
          cloudTokenBudget: 6,
          kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", initialCreditBytes: String(256 << 20) },
        }),
      );
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
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 16, targetTpotUs: 5000 }));
      await p.until((f) => f.body === "firstToken", "FirstToken");
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
      const rest = await p.collect(1);
      const end = rest[rest.length - 1]!;
      expectThat(
        field(end, "end.reason") === "END_REASON_BUDGET_EXHAUSTED" && field(end, "end.tokenCount") === 16,
        "the request served to its whole budget (PDD-MSG-007)",
        render(end),
      );
    },
  },
  {
    id: "cloud.goodbye.device",
    title: "after the device's Goodbye, runs a started request to its End, then closes gracefully",
    role: "cloud",
    requirements: ["PDD-CONN-015"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 12, targetTpotUs: 5000 }));
      await p.until((f) => f.body === "firstToken", "FirstToken");
      p.send({ goodbye: {} });
      const rest = await p.collect(1);
      const end = rest[rest.length - 1]!;
      expectThat(
        field(end, "end.reason") === "END_REASON_BUDGET_EXHAUSTED",
        "the started request run to its End (PDD-CONN-015)",
        render(end),
      );
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
      // A request paced to outlive the limit: its whole budget at 1 s per token.
      p.send(prefill(1, { cloudTokenBudget: Math.min(256, Math.ceil(max / 1000) + 8), targetTpotUs: 1_000_000 }));
      await expectRequestError(p, 1, "ERROR_CODE_TIMEOUT", "PDD-ORD-006");
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
          await q.hello();
          q.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 200_000 }));
          const a = await q.until((f) => requestIdOf(f) === 1, "Accepted");
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
        await q.hello();
        q.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 200_000 }));
        const a = await q.until((f) => requestIdOf(f) === 1, "Accepted");
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
      if (field(p.ack!, "helloAck.capabilities.refinement") !== true)
        throw new NotOffered("the cloud does not offer refinement");
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

/** A frame that explains a KV image that never came: a request error, or a refused grant. */
function whyNoKv(f: Frame): string {
  if (f.body === "error") return `the request failed with ${field(f, "error.code")} (${field(f, "error.message")})`;
  if (f.body === "accepted" && field(f, "accepted.kv.granted") !== true)
    return `KV was refused with ${field(f, "accepted.kv.refusal")}`;
  return "";
}
