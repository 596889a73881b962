/**
 * Cloud cases for the rules spec 1.1 added (issue 14): each fails on the 1.0
 * reference cloud's behaviour, shown by a mutant in test/mutants-1-1.ts.
 */
import type { Case, CaseEnv } from "./case.js";
import {
  checkServed,
  closeCarries,
  expectConnectionError,
  expectRequestError,
  expectThat,
  kvModel,
  prefill,
} from "./cloud-cases.js";
import { CheckFailure, field, isClose, NotOffered, Probe, requestIdOf } from "./probe.js";
import { fittedPrompt } from "./prompt-room.js";
import { Refused } from "./raw-client.js";
import { Packr } from "msgpackr";
import { render, type Frame } from "./wire.js";

/** A Hello like Probe.hello's, with some fields replaced; does not wait for the answer. */
function sendHello(p: Probe, extra: Record<string, unknown>): void {
  p.send({
    hello: {
      versions: [{ major: 1, minor: 0 }],
      codecs: [p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"],
      capabilities: { kvChunks: true, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"], refinement: true },
      clientName: "pdd-conformance/0.1.0",
      ...extra,
    },
  });
}

/** Serves one request and returns its End's reason and token_count (after the §6 checks). */
async function endOf(p: Probe, id: number, extra: Record<string, unknown>): Promise<{ reason: string; count: number }> {
  p.send(prefill(id, extra));
  const frames = await p.collect(id);
  checkServed(frames, id, Number(extra.cloudTokenBudget));
  const end = frames[frames.length - 1]!;
  const reason = field<string>(end, "end.reason");
  if (reason === "END_REASON_EOS") throw new NotOffered("the model ended its answer before max_tokens");
  return { reason, count: field<number>(end, "end.tokenCount") };
}

/** Opens a session with `header` as the transport credential (null: none) and sends a Hello carrying `helloToken`; true when HelloAck came. */
async function helloAnswered(env: CaseEnv, header: string | null, helloToken: string): Promise<boolean> {
  let q: Probe;
  try {
    q = new Probe(await env.target.raw({ token: header }), env.target.codec, 5000);
  } catch (e) {
    if (e instanceof Refused) return false;
    throw e;
  }
  q.transport = env.target.transport;
  try {
    sendHello(q, { authToken: helloToken });
    const r = await q.recv(5000);
    if (r === undefined) throw new CheckFailure("HelloAck or UNAUTHENTICATED within 5 s (PDD-CONN-021)", "nothing");
    return !isClose(r) && (r as Frame).body === "helloAck";
  } finally {
    q.close();
  }
}

const plainPackr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const HELLO = { versions: [{ major: 1, minor: 0 }], codecs: ["CODEC_MSGPACK"], clientName: "pdd-conformance/0.1.0" };

/** A MessagePack DeviceFrame {hello} (a fixmap) with one more entry of raw bytes. */
function helloWith(entry: number[]): Uint8Array {
  const b = plainPackr.pack({ hello: HELLO });
  if (b[0]! < 0x80 || b[0]! >= 0x8f) throw new Error("helloWith: the Hello is not a fixmap");
  return Uint8Array.from([b[0]! + 1, ...b.subarray(1), ...entry]);
}
const fixstr = (s: string) => [0xa0 + s.length, ...Buffer.from(s)];

export const CLOUD_1_1_CASES: Case[] = [
  {
    id: "cloud.stop.first-wins",
    title: "lets the first Takeover decide, ignoring a second one and a Cancel, and ignores KvCredit without KV",
    role: "cloud",
    requirements: ["PDD-SM-007"],
    async run(p) {
      await p.hello();
      // Credit for a request that asked no KV, before and after Accepted: ignored, no error.
      p.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 20_000 }));
      p.send({ kvCredit: { requestId: 1, bytes: "4096" } });
      await p.until((f) => requestIdOf(f) === 1 && f.body === "firstToken", "FirstToken");
      p.send({ kvCredit: { requestId: 1, bytes: "4096" } });
      p.send({ takeover: { requestId: 1, index: 1 } });
      p.send({ takeover: { requestId: 1, index: 0 } });
      p.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED" } });
      const rest = await p.collect(1);
      const err = rest.find((f) => f.body === "error");
      expectThat(
        err === undefined,
        "no Error for a stray KvCredit, a second Takeover or a Cancel (PDD-SM-007)",
        err ? render(err) : "",
      );
      const end = rest[rest.length - 1]!;
      expectThat(
        field(end, "end.reason") === "END_REASON_TAKEN_OVER" && field(end, "end.tokenCount") === 1,
        "End{TAKEN_OVER, 1}: the first Takeover decides (PDD-SM-007)",
        render(end),
      );
    },
  },
  {
    id: "cloud.kv.zero-credit",
    title: "sends no KvChunk before the first KvCredit when initial_credit_bytes is 0",
    role: "cloud",
    requirements: ["PDD-KV-015"],
    needs: ["kv"],
    async run(p, env) {
      const model = await kvModel(p);
      p.close();
      const q = await env.open();
      await q.hello({ deviceModel: model });
      q.send(
        prefill(1, {
          text: fittedPrompt(q, { repeats: 20, budget: 12 }),
          cloudTokenBudget: 12,
          targetTpotUs: 50_000,
          kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", initialCreditBytes: "0" },
        }),
      );
      const accepted = await q.until((f) => requestIdOf(f) === 1, "Accepted");
      if (field(accepted, "accepted.kv.granted") !== true) throw new NotOffered("KV was not granted");
      let tokens = 0;
      let end: Frame | undefined;
      // Until 6 tokens have come (past the point where a cloud exports its image), grant nothing.
      while (!end && tokens < 6) {
        const f = await q.until((x) => requestIdOf(x) === 1, "the request's frames");
        expectThat(f.body !== "kvChunk", "no KvChunk before any KvCredit (PDD-KV-015)", render(f));
        if (f.body === "firstToken") tokens = 1;
        if (f.body === "tokenBatch") tokens += field<unknown[]>(f, "tokenBatch.tokens").length;
        if (f.body === "end") end = f;
      }
      q.send({ kvCredit: { requestId: 1, bytes: String(256 << 20) } });
      while (!end) {
        const f = await q.until((x) => requestIdOf(x) === 1, "the request's End", 15_000);
        if (f.body === "end") end = f;
      }
    },
  },
  {
    id: "cloud.codec.msgpack-strict",
    title: "treats an extension type, a non-string key or a key twice in one map as MALFORMED_FRAME",
    role: "cloud",
    requirements: ["PDD-CODEC-013"],
    codecs: ["msgpack"],
    async run(p, env) {
      const bad: [string, number[]][] = [
        ["a timestamp extension under an unknown key", [...fixstr("zzFuture"), 0xd6, 0xff, 0, 0, 0, 0]],
        ["an integer map key", [0x01, 0x01]],
        // The same valid Hello twice: a decoder that keeps the last of two equal keys serves it.
        ["the key hello twice", [...fixstr("hello"), ...plainPackr.pack(HELLO)]],
      ];
      let q = p;
      for (const [what, entry] of bad) {
        q.sendBytes(helloWith(entry), `a Hello with ${what}`);
        await expectConnectionError(q, "ERROR_CODE_MALFORMED_FRAME", 1, `PDD-CODEC-013: ${what}`);
        q = await env.open();
      }
    },
  },
  {
    id: "cloud.refine.rounding",
    title: "keeps ⌈0.6·n⌉ tokens at target_ratio 0.6 when 0.6·n is whole, on every codec",
    role: "cloud",
    requirements: ["PDD-REF-004"],
    needs: ["refinement"],
    async run(p) {
      await p.hello();
      if (field(p.ack!, "helloAck.capabilities.refinement") !== true)
        throw new NotOffered("the cloud does not offer refinement");
      // Grow the prompt until its token count n is a multiple of 5: there ⌈0.6·n⌉ = 0.6·n, and a cloud that
      // rounds the float32 0.6000000238 in doubles keeps one token more (PDD-REF-004).
      let text = "The quick brown fox jumps over the lazy dog and the owls smile at every visitor";
      for (let id = 1; id <= 6; id++, text += " fox") {
        p.send(
          prefill(id, {
            text,
            cloudTokenBudget: 1,
            refine: { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: 0.6 },
          }),
        );
        const frames = await p.collect(id);
        const r = frames.find((f) => f.body === "refinedPrompt");
        if (!r) throw new NotOffered("no RefinedPrompt at ratio 0.6");
        const n = field<number>(r, "refinedPrompt.originalTokens");
        if (n % 5 !== 0) continue;
        const kept = field<number>(r, "refinedPrompt.keptTokens");
        expectThat(
          kept === (3 * n) / 5,
          `${(3 * n) / 5} of ${n} tokens kept at target_ratio 0.6: q = 600,000 millionths (PDD-REF-004)`,
          `${kept} kept`,
        );
        return;
      }
      throw new NotOffered("no prompt of a multiple of 5 tokens within 6 tries");
    },
  },
  {
    id: "cloud.kv.abort",
    title: "on KvAbort sends no further chunk, whatever the credit, and runs the tokens to End",
    role: "cloud",
    requirements: ["PDD-KV-019"],
    needs: ["kv"],
    async run(p, env) {
      const model = await kvModel(p);
      p.close();
      const q = await env.open();
      await q.hello({ deviceModel: model });
      const CHUNK = 4096;
      q.send(
        prefill(1, {
          text: fittedPrompt(q, { repeats: 20, budget: 24 }),
          cloudTokenBudget: 24,
          targetTpotUs: 20_000,
          kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: CHUNK, initialCreditBytes: String(CHUNK) },
        }),
      );
      const accepted = await q.until((f) => requestIdOf(f) === 1, "Accepted");
      if (field(accepted, "accepted.kv.granted") !== true) throw new NotOffered("KV was not granted");
      const first = await q.until((f) => requestIdOf(f) === 1 && (f.body === "kvChunk" || f.body === "end"), "KvChunk");
      if (first.body === "end") throw new NotOffered("the cloud sent no KV image for this request");
      q.send({ kvAbort: { requestId: 1, code: "ERROR_CODE_KV_INTEGRITY", reason: "conformance: abort" } });
      q.send({ kvCredit: { requestId: 1, bytes: String(1 << 20) } });
      let kvBytes = field<Uint8Array>(first, "kvChunk.data").length;
      let end: Frame | undefined;
      while (!end) {
        const f = await q.until((x) => requestIdOf(x) === 1, "the request's End (PDD-KV-019)", 15_000);
        if (f.body === "end") end = f;
        if (f.body === "kvChunk") kvBytes += field<Uint8Array>(f, "kvChunk.data").length;
      }
      expectThat(
        field(end, "end.reason") === "END_REASON_BUDGET_EXHAUSTED" || field(end, "end.reason") === "END_REASON_EOS",
        "the tokens run to their End, not stopped by KvAbort (PDD-KV-019)",
        render(end),
      );
      // Chunks already on the wire when the KvAbort arrived may still come (they crossed it); no credit is
      // granted past the first chunk until after the KvAbort, so every later chunk was sent after processing it.
      expectThat(
        kvBytes === CHUNK && Number(field(end, "end.usage.kvBytesSent")) === CHUNK,
        `no chunk after the KvAbort: kv_bytes_sent = the one ${CHUNK}-byte chunk (PDD-KV-019)`,
        `${kvBytes} bytes received, kv_bytes_sent ${field(end, "end.usage.kvBytesSent")}`,
      );
    },
  },
  {
    id: "cloud.connection.device-error",
    title: "ends the connection on the device's Error, with its code and no further frame",
    role: "cloud",
    requirements: ["PDD-CONN-024"],
    async run(p) {
      await p.hello();
      p.send({ error: { requestId: 0, code: "ERROR_CODE_INTERNAL", message: "the device failed" } });
      // The rule says 1 s; 5 s leaves a loaded machine room, and a cloud that ignores the Error never closes.
      const r = await p.recv(5000);
      if (r === undefined) throw new CheckFailure("the connection closed (PDD-CONN-024)", "nothing within 5 s");
      if (!isClose(r)) throw new CheckFailure("no frame after the device's Error (PDD-CONN-024)", render(r as Frame));
      const c = r.closed.code;
      expectThat(
        closeCarries(p.transport ?? "websocket", c, 20),
        "a close carrying the device's INTERNAL: 4020, gRPC INTERNAL (13), session code 20 (PDD-CONN-024, §13.3)",
        `close ${c} ${r.closed.reason}`,
      );
    },
  },
  {
    id: "cloud.request.context-grant",
    title: "grants no more than context_length − prompt_tokens, and keeps max_prompt_tokens below context_length",
    role: "cloud",
    requirements: ["PDD-REQ-010", "PDD-MSG-016"],
    async run(p, env) {
      await p.hello();
      if (field(p.ack!, "helloAck.capabilities.tokenIds") !== true)
        throw new NotOffered("the cloud does not take token-ID prompts");
      const model = field<Record<string, unknown>>(p.ack!, "helloAck.cloudModel");
      const context = Number(model.contextLength);
      const maxPrompt = field<number>(p.ack!, "helloAck.limits.maxPromptTokens") || context - 1;
      expectThat(
        maxPrompt < context,
        `max_prompt_tokens below context_length ${context} (PDD-REQ-010)`,
        String(maxPrompt),
      );
      if (maxPrompt > 8192) throw new NotOffered(`max_prompt_tokens is ${maxPrompt}; the case prefills at most 8,192`);
      p.close();
      const q = await env.open();
      await q.hello({ deviceModel: model });
      // A prompt of max_prompt_tokens tokens (token 1, the usual BOS), leaving context − max positions.
      const ids = Array.from({ length: maxPrompt }, () => 1);
      q.send({ prefillRequest: { requestId: 1, tokens: { ids }, cloudTokenBudget: 256 } });
      const frames = await q.collect(1, 20_000);
      const { tokens, granted } = checkServed(frames, 1, 256);
      expectThat(
        granted <= context - maxPrompt && maxPrompt + tokens <= context,
        `a grant of at most ${context} − ${maxPrompt} (PDD-REQ-010, PDD-MSG-016)`,
        `granted ${granted}, sent ${tokens}`,
      );
    },
  },
  {
    id: "cloud.request.order",
    title:
      "checks a request in the order of PDD-REQ-007: an empty token list is INVALID_ARGUMENT, not TOKENIZER_MISMATCH",
    role: "cloud",
    requirements: ["PDD-REQ-007", "PDD-REQ-009"],
    async run(p) {
      await p.hello(); // no device_model: a token-ID prompt could not be accepted (PDD-REQ-002)
      p.send({ prefillRequest: { requestId: 1, tokens: { ids: [] }, cloudTokenBudget: 4 } });
      await expectRequestError(p, 1, "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-007 step 3 before step 5");
      p.send(prefill(2, { targetTpotUs: 1_000_001 }));
      await expectRequestError(p, 2, "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-009");
      p.send({ prefillRequest: { requestId: 3, tokens: { ids: [1] }, cloudTokenBudget: 0 } });
      await expectRequestError(p, 3, "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-007 step 4 before step 5");
    },
  },
  {
    id: "cloud.request.token-ids-oov",
    title: "refuses a token-ID prompt with an ID not below vocab_size with INVALID_ARGUMENT",
    role: "cloud",
    requirements: ["PDD-REQ-008"],
    async run(p, env) {
      await p.hello();
      if (field(p.ack!, "helloAck.capabilities.tokenIds") !== true)
        throw new NotOffered("the cloud does not take token-ID prompts");
      const model = field<Record<string, unknown>>(p.ack!, "helloAck.cloudModel");
      p.close();
      // The cloud's own tokenizer: the prompt passes PDD-REQ-002 and fails only on its ID.
      const q = await env.open();
      await q.hello({ deviceModel: model });
      const vocab = Number(model.vocabSize);
      q.send({ prefillRequest: { requestId: 1, tokens: { ids: [1, vocab] }, cloudTokenBudget: 4 } });
      await expectRequestError(q, 1, "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-008");
    },
  },
  {
    id: "cloud.hello.first-frame-bodiless",
    title: "treats a first frame with no body, or a body it does not know, as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-CONN-002", "PDD-VER-006"],
    async run(p, env) {
      // proto: an empty message, and field 15 (a body from a later version) holding an empty message.
      const firsts: [string, (q: Probe) => void][] =
        p.codec === "proto"
          ? [
              ["an empty frame", (q) => q.sendBytes(new Uint8Array(), "an empty DeviceFrame")],
              ["an unknown body", (q) => q.sendBytes(Uint8Array.of(0x7a, 0x00), "DeviceFrame field 15 (unknown)")],
            ]
          : [
              ["an empty frame", (q) => q.sendRaw({}, "an empty map")],
              ["an unknown body", (q) => q.sendRaw({ fromTheFuture: {} }, "an unknown body")],
            ];
      let q = p;
      for (const [what, send] of firsts) {
        send(q);
        await expectConnectionError(q, "ERROR_CODE_PROTOCOL_VIOLATION", 5, `PDD-CONN-002, first frame: ${what}`);
        q = await env.open();
      }
    },
  },
  {
    id: "cloud.auth.precedence",
    title: "takes the transport's credential over Hello.auth_token, and Hello.auth_token only without one",
    role: "cloud",
    requirements: ["PDD-SEC-008"],
    async run(p, env) {
      p.close();
      const token = env.target.token;
      if (!token) throw new NotOffered("give the suite a credential (--token) to test a cloud that requires one");
      const wrong = "pdd-conformance-no-such-key";
      for (const [header, hello, want, what] of [
        [token, wrong, true, "a valid transport credential wins over a wrong Hello.auth_token"],
        [null, token, true, "Hello.auth_token counts when the transport carried none"],
        [wrong, token, false, "a refused transport credential never falls back to Hello.auth_token"],
      ] as const) {
        const got = await helloAnswered(env, header, hello);
        expectThat(got === want, `${what} (PDD-SEC-008)`, got ? "HelloAck" : "refused");
      }
    },
  },
  {
    id: "cloud.hello.versions",
    title: "refuses a Hello with no versions, one major twice, or more than 8 entries in a list",
    role: "cloud",
    requirements: ["PDD-VER-009", "PDD-LIMIT-007"],
    async run(p, env) {
      const own = p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK";
      sendHello(p, { versions: [] });
      await expectConnectionError(p, "ERROR_CODE_UNSUPPORTED_VERSION", 3, "PDD-VER-009");
      const twice = await env.open();
      sendHello(twice, {
        versions: [
          { major: 1, minor: 0 },
          { major: 1, minor: 1 },
        ],
      });
      await expectConnectionError(twice, "ERROR_CODE_INVALID_ARGUMENT", 9, "PDD-VER-009");
      const nine = await env.open();
      sendHello(nine, { codecs: Array.from({ length: 9 }, () => own) });
      await expectConnectionError(nine, "ERROR_CODE_INVALID_ARGUMENT", 9, "PDD-LIMIT-007");
    },
  },
  {
    id: "cloud.request-id.zero",
    title:
      "answers a PrefillRequest with id 0 with DUPLICATE_REQUEST_ID, and any other frame with id 0 with PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-CONN-013", "PDD-SM-006"],
    async run(p) {
      await p.hello();
      p.send(prefill(0));
      const dup = await p.until((f) => f.body === "error", "an Error for the PrefillRequest with id 0 (PDD-SM-005)");
      expectThat(
        field(dup, "error.code") === "ERROR_CODE_DUPLICATE_REQUEST_ID" && field(dup, "error.requestId") === 0,
        "Error{0, DUPLICATE_REQUEST_ID}, and the connection stays open (PDD-CONN-013)",
        render(dup),
      );
      p.send({ takeover: { requestId: 0, index: 0 } });
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-SM-006");
    },
  },
  {
    id: "cloud.goodbye.then-request",
    title:
      "refuses a PrefillRequest after the device's Goodbye with PROTOCOL_VIOLATION, and runs the started one to End",
    role: "cloud",
    requirements: ["PDD-CONN-027"],
    async run(p) {
      // 64 tokens paced for 20 ms each: well inside the test cloud's 3 s request limit on a loaded machine
      // (startStreaming's 256 took 3 s there and ended TIMEOUT).
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 64, targetTpotUs: 20_000 }));
      await p.until((f) => f.body === "firstToken", "FirstToken");
      p.send({ goodbye: {} });
      p.send(prefill(2));
      await expectRequestError(p, 2, "ERROR_CODE_PROTOCOL_VIOLATION", "PDD-CONN-027");
      const rest = await p.collect(1, 15_000);
      const end = rest[rest.length - 1]!;
      expectThat(
        field(end, "end.reason") === "END_REASON_BUDGET_EXHAUSTED",
        "the request started before the Goodbye run to its End (PDD-CONN-015, PDD-CONN-027)",
        render(end),
      );
    },
  },
  {
    id: "cloud.idle",
    title: "closes an idle connection with Goodbye{TIMEOUT} and a graceful close, not a connection error",
    role: "cloud",
    requirements: ["PDD-CONN-020"],
    async run(p) {
      const ack = (await p.hello())!;
      const idle = field<number>(ack, "helloAck.limits.idleTimeoutMs") || 60_000;
      if (idle > 15_000) throw new NotOffered(`idle_timeout_ms is ${idle}; the case waits at most 15 s`);
      let goodbye: Frame | undefined;
      for (;;) {
        const r = await p.recv(idle + 5000);
        if (r === undefined) throw new CheckFailure(`a close within ${idle} ms + 5 s of idleness`, "none");
        if (isClose(r)) {
          const c = r.closed.code;
          expectThat(
            c === 1000 || c === 0,
            "a graceful close: 1000, gRPC OK or session code 0, not TIMEOUT's 4019/DEADLINE_EXCEEDED (PDD-CONN-020)",
            `close ${c} ${r.closed.reason}`,
          );
          break;
        }
        const f = r as Frame;
        expectThat(f.body === "goodbye", "only Goodbye before the idle close, no Error (PDD-CONN-020)", render(f));
        goodbye = f;
      }
      expectThat(
        goodbye !== undefined && field(goodbye, "goodbye.code") === "ERROR_CODE_TIMEOUT",
        "Goodbye{TIMEOUT} before the close (PDD-CONN-020)",
        goodbye ? render(goodbye) : "no Goodbye",
      );
    },
  },
  {
    id: "cloud.end.max-tokens",
    title: "ends with MAX_TOKENS when token_count reaches max_tokens, also when max_tokens equals the budget",
    role: "cloud",
    requirements: ["PDD-IDX-004"],
    async run(p) {
      await p.hello();
      for (const [id, budget, maxTokens, want] of [
        [1, 3, 3, "END_REASON_MAX_TOKENS"],
        [2, 8, 3, "END_REASON_MAX_TOKENS"],
        [3, 3, 8, "END_REASON_BUDGET_EXHAUSTED"],
      ] as const) {
        const { reason, count } = await endOf(p, id, { cloudTokenBudget: budget, maxTokens });
        expectThat(
          reason === want && count === Math.min(budget, maxTokens),
          `End{${want}, ${Math.min(budget, maxTokens)}} for budget ${budget}, max_tokens ${maxTokens} (PDD-IDX-004)`,
          `End{${reason}, ${count}}`,
        );
      }
    },
  },
  {
    id: "cloud.hello.max-frame-minimum",
    title: "refuses a Hello whose max_frame_bytes is below 64 KiB with INVALID_ARGUMENT, and no HelloAck",
    role: "cloud",
    requirements: ["PDD-MSG-012"],
    async run(p) {
      sendHello(p, { maxFrameBytes: 200 });
      await expectConnectionError(p, "ERROR_CODE_INVALID_ARGUMENT", 9, "PDD-MSG-012");
    },
  },
  {
    id: "cloud.kv.chunk-minimum",
    title: "refuses KV asked with a max_chunk_bytes below 4,096 (INVALID_ARGUMENT) and serves the tokens",
    role: "cloud",
    requirements: ["PDD-KV-014", "PDD-KV-001"],
    needs: ["kv"],
    async run(p, env) {
      const model = await kvModel(p);
      p.close();
      // The cloud's own model: every other condition of the grant holds (PDD-KV-001).
      const q = await env.open();
      await q.hello({ deviceModel: model });
      q.send(
        prefill(1, {
          cloudTokenBudget: 4,
          kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE", maxChunkBytes: 1000, initialCreditBytes: String(1 << 20) },
        }),
      );
      const frames = await q.collect(1);
      const accepted = frames[0]!;
      expectThat(
        accepted.body === "accepted" &&
          field(accepted, "accepted.kv.granted") !== true &&
          field(accepted, "accepted.kv.refusal") === "ERROR_CODE_INVALID_ARGUMENT",
        "KV refused with INVALID_ARGUMENT for max_chunk_bytes 1000 (PDD-KV-014, PDD-KV-001)",
        render(accepted),
      );
      const chunks = frames.filter((f: Frame) => f.body === "kvChunk");
      expectThat(chunks.length === 0, "no KvChunk for a refused grant", `${chunks.length} chunks`);
      const end = frames[frames.length - 1]!;
      expectThat(
        requestIdOf(end) === 1 && field(end, "end.reason") !== "END_REASON_ERROR",
        "the request served without KV",
        render(end),
      );
    },
  },
];
