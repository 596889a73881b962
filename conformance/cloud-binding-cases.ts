/**
 * Cases for a cloud under test about the handshake and credentials (§2, §12)
 * and the bindings (§10): part of MORE_CLOUD_CASES (cloud-more-cases.ts).
 */
import type { Case } from "./case.js";
import { closeCarries, expectConnectionError, expectThat, helloFrame, kvPrefill, kvSession } from "./cloud-helpers.js";
import { ggufFingerprints } from "./fingerprints.js";
import { CheckFailure, field, isClose, NotOffered, requestIdOf } from "./probe.js";
import { Refused, type RawSession } from "./raw-client.js";
import { decodeCloud, encodeDevice, render, type Frame } from "./wire.js";

/** The next frame or close of a raw session, skipping nothing. */
async function rawClose(s: RawSession, ms: number): Promise<{ code: number; reason: string } | "frame" | undefined> {
  const v = await s.next(ms);
  if (v === undefined) return undefined;
  return v instanceof Uint8Array ? "frame" : v;
}

export const BINDING_CLOUD_CASES: Case[] = [
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
          s.send(encodeDevice(helloFrame(env.target.codec, { authToken: token ?? "" }), env.target.codec));
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
      p.send(helloFrame(p.codec, { clientName: "x".repeat(60 * 1024) }));
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
      const hello = encodeDevice(helloFrame("proto", { clientName: "pdd-conformance/0.1.0" }), "proto");
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
      const q = await kvSession(p, env);
      q.send(kvPrefill(q, 1, { repeats: 8, budget: 8, maxChunkBytes: 4096, credit: 64 << 20 }));
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
];

/** A frame that explains a KV image that never came: a request error, or a refused grant. */
function whyNoKv(f: Frame): string {
  if (f.body === "error") return `the request failed with ${field(f, "error.code")} (${field(f, "error.message")})`;
  if (f.body === "accepted" && field(f, "accepted.kv.granted") !== true)
    return `KV was refused with ${field(f, "accepted.kv.refusal")}`;
  return "";
}
