/**
 * Cases for a cloud under test: the suite plays the device. The connection
 * (§2, §3) and request (§5, §6) rules here; what frames carry (codecs, KV,
 * refinement, limits) in cloud-payload-cases.ts; the helpers the case files
 * share in cloud-helpers.ts, re-exported here.
 */
import type { Case } from "./case.js";
import {
  checkServed,
  collectToEnd,
  expectConnectionError,
  expectEnd,
  expectOnlyPong,
  expectRequestFails,
  expectRequestError,
  expectThat,
  helloFrame,
  prefill,
  startStreaming,
} from "./cloud-helpers.js";
import { PAYLOAD_CASES } from "./cloud-payload-cases.js";
import { field, isClose, requestIdOf } from "./probe.js";
import { render, type Frame } from "./wire.js";

export {
  checkServed,
  closeCarries,
  expectConnectionError,
  expectOnlyPong,
  expectRequestError,
  expectThat,
  kvModel,
  kvOffered,
  prefill,
  startStreaming,
} from "./cloud-helpers.js";

const CONNECTION_AND_REQUEST_CASES: Case[] = [
  {
    id: "cloud.hello",
    title: "answers Hello with HelloAck at the negotiated version and the connection's codec",
    role: "cloud",
    requirements: [
      "PDD-CONN-001",
      "PDD-CONN-003",
      "PDD-CONN-008",
      "PDD-CONN-010",
      "PDD-VER-001",
      "PDD-VER-002",
      "PDD-GRPC-001",
      "PDD-CODEC-002",
    ],
    async run(p) {
      const ack = (await p.hello({
        versions: [
          { major: 1, minor: 99 },
          { major: 7, minor: 0 },
        ],
      }))!;
      expectThat(
        field(ack, "helloAck.version.major") === 1,
        "version 1.x chosen (PDD-VER-002)",
        JSON.stringify(field(ack, "helloAck.version")),
      );
      expectThat(
        field<number>(ack, "helloAck.version.minor") <= 99,
        "minor = min(device, cloud) (PDD-VER-002)",
        JSON.stringify(field(ack, "helloAck.version")),
      );
      expectThat(
        field(ack, "helloAck.codec") === (p.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"),
        "the connection's codec in HelloAck (PDD-CONN-008)",
        String(field(ack, "helloAck.codec")),
      );
      const fp = field<Uint8Array>(ack, "helloAck.cloudModel.modelFingerprint");
      expectThat(fp?.length === 32, "a 32-byte model fingerprint (PDD-CONN-010)", String(fp?.length));
    },
  },
  {
    id: "cloud.version.unknown-major",
    title: "refuses an unknown major version with UNSUPPORTED_VERSION and its supported versions",
    role: "cloud",
    requirements: ["PDD-VER-003", "PDD-CONN-016", "PDD-ERR-001"],
    async run(p) {
      p.send(helloFrame(p.codec, { versions: [{ major: 2, minor: 0 }] }));
      const f = await p.until(() => true, "an Error UNSUPPORTED_VERSION, no HelloAck (PDD-VER-003)");
      expectThat(
        f.body === "error" && field(f, "error.code") === "ERROR_CODE_UNSUPPORTED_VERSION",
        "Error UNSUPPORTED_VERSION (PDD-VER-003)",
        render(f),
      );
      const sv = field<{ major: number }[]>(f, "error.supportedVersions");
      expectThat(
        sv.some((v) => v.major === 1),
        "supported_versions listing 1.x (PDD-VER-003)",
        JSON.stringify(sv),
      );
      const after = await p.recv(2000);
      expectThat(
        after === undefined || isClose(after),
        "the connection closed, no further frame (PDD-CONN-016)",
        after ? render(after as Frame) : "",
      );
    },
  },
  {
    id: "cloud.hello.first-frame",
    title: "treats a connection whose first frame is not Hello as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-CONN-002"],
    async run(p) {
      p.send(prefill(1));
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-CONN-002");
    },
  },
  {
    id: "cloud.hello.second",
    title: "treats a second Hello as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-CONN-004"],
    async run(p) {
      await p.hello();
      await p.hello({ await: false });
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-CONN-004");
    },
  },
  {
    id: "cloud.hello.codec",
    title: "refuses a Hello whose codecs lack the connection's codec",
    role: "cloud",
    requirements: ["PDD-CONN-007"],
    async run(p) {
      await p.hello({ await: false, codecs: [p.codec === "proto" ? "CODEC_MSGPACK" : "CODEC_PROTO"] });
      await expectConnectionError(p, "ERROR_CODE_UNSUPPORTED_CODEC", 4, "PDD-CONN-007");
    },
  },
  {
    id: "cloud.request.pipelined",
    title: "serves a request sent right behind the Hello, before HelloAck",
    role: "cloud",
    requirements: ["PDD-CONN-005"],
    async run(p) {
      await p.hello({ await: false });
      p.send(prefill(1));
      const ack = await p.until(() => true, "HelloAck first");
      expectThat(ack.body === "helloAck", "HelloAck first (PDD-CONN-003)", render(ack));
      checkServed(await p.collect(1), 1, 4);
    },
  },
  {
    id: "cloud.request.served",
    title: "serves a request: Accepted, the first token, dense batches, End last with usage",
    role: "cloud",
    requirements: [
      "PDD-ORD-001",
      "PDD-ORD-002",
      "PDD-ORD-003",
      "PDD-IDX-001",
      "PDD-IDX-002",
      "PDD-IDX-003",
      "PDD-IDX-004",
      "PDD-IDX-006",
      "PDD-MSG-001",
      "PDD-MSG-002",
      "PDD-MSG-008",
      "PDD-REQ-001",
      "PDD-REQ-005",
      "PDD-VER-007",
    ],
    async run(p) {
      await p.hello();
      p.send(prefill(3, { cloudTokenBudget: 12 }));
      const frames = await p.collect(3);
      const accepted = frames[0]!;
      expectThat(
        field(accepted, "accepted.kv") === null && field(accepted, "accepted.refine") === null,
        "no kv/refine grant when not asked (PDD-MSG-008)",
        render(accepted),
      );
      checkServed(frames, 3, 12);
      await p.quietFor(3, 300);
    },
  },
  {
    id: "cloud.request.max-tokens",
    title: "never sends a token at or past max_tokens",
    role: "cloud",
    requirements: ["PDD-IDX-003"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 50, maxTokens: 3 }));
      const { tokens } = checkServed(await p.collect(1), 1, 50);
      expectThat(tokens <= 3, "at most max_tokens = 3 tokens (PDD-IDX-003)", `${tokens} tokens`);
    },
  },
  {
    id: "cloud.request.empty-prompt",
    title: "refuses an empty prompt with INVALID_ARGUMENT, then End",
    role: "cloud",
    requirements: ["PDD-REQ-003", "PDD-ORD-004", "PDD-MSG-011", "PDD-ERR-001", "PDD-ORD-001"],
    async run(p) {
      await p.hello();
      await expectRequestFails(p, prefill(1, { text: "" }), "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-003");
    },
  },
  {
    id: "cloud.request.zero-budget",
    title: "refuses a cloud_token_budget of 0 with INVALID_ARGUMENT",
    role: "cloud",
    requirements: ["PDD-REQ-004"],
    async run(p) {
      await p.hello();
      await expectRequestFails(p, prefill(1, { cloudTokenBudget: 0 }), "ERROR_CODE_INVALID_ARGUMENT", "PDD-REQ-004");
    },
  },
  {
    id: "cloud.takeover.race",
    title: "on Takeover(k) stops at once and ends with TAKEN_OVER and token_count k, tokens in flight or not",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-004", "PDD-TAKEOVER-005"],
    async run(p) {
      await startStreaming(p);
      // Take over at k = 2 once 4 tokens came (more are in flight): token_count must be k, not the tokens sent.
      await p.until(
        (f) =>
          f.body === "tokenBatch" &&
          field<number>(f, "tokenBatch.startIndex") + field<unknown[]>(f, "tokenBatch.tokens").length >= 4,
        "4 tokens before the Takeover",
      );
      p.send({ takeover: { requestId: 1, index: 2 } });
      const { frames: rest, end } = await collectToEnd(p, 1);
      expectThat(
        field(end, "end.reason") === "END_REASON_TAKEN_OVER",
        "End TAKEN_OVER (PDD-TAKEOVER-005)",
        render(end),
      );
      expectThat(
        field(end, "end.tokenCount") === 2,
        "End.token_count = k = 2, not the 4 or more tokens sent (PDD-TAKEOVER-005)",
        String(field(end, "end.tokenCount")),
      );
      const inFlight = rest
        .filter((f) => f.body === "tokenBatch")
        .reduce((a, f) => a + field<unknown[]>(f, "tokenBatch.tokens").length, 0);
      expectThat(
        inFlight < 250,
        "the cloud stopped after the takeover, not at the budget (PDD-TAKEOVER-004)",
        `${inFlight} more tokens`,
      );
      await p.quietFor(1, 300);
    },
  },
  {
    id: "cloud.takeover.beyond-sent",
    title: "treats a Takeover beyond the tokens sent as PROTOCOL_VIOLATION for the request",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-006"],
    async run(p) {
      await startStreaming(p);
      p.send({ takeover: { requestId: 1, index: 100000 } });
      await expectRequestError(p, 1, "ERROR_CODE_PROTOCOL_VIOLATION", "PDD-TAKEOVER-006", 1); // after FirstToken
    },
  },
  {
    id: "cloud.takeover.zero",
    title: "accepts Takeover(0) after Accepted and ends with TAKEN_OVER, token_count 0",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-008"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 256, targetTpotUs: 20000 }));
      await p.until((f) => f.body === "accepted", "Accepted");
      p.send({ takeover: { requestId: 1, index: 0 } });
      const { end } = await collectToEnd(p, 1);
      expectEnd(end, "END_REASON_TAKEN_OVER", "End TAKEN_OVER with token_count 0 (PDD-TAKEOVER-008)", 0);
    },
  },
  {
    id: "cloud.takeover.crossed-end",
    title: "ignores a Takeover and a Cancel that crossed its End",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-007", "PDD-SM-003"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 2 }));
      await p.collect(1);
      p.send({ takeover: { requestId: 1, index: 1 } });
      p.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED" } });
      await expectOnlyPong(p, "no error for frames that crossed End (PDD-SM-003)");
    },
  },
  {
    id: "cloud.cancel",
    title: "on Cancel stops and ends with CANCELLED",
    role: "cloud",
    requirements: ["PDD-CANCEL-001"],
    async run(p) {
      await startStreaming(p);
      p.send({ cancel: { requestId: 1, code: "ERROR_CODE_CANCELLED", reason: "user stopped" } });
      const { end } = await collectToEnd(p, 1);
      expectEnd(end, "END_REASON_CANCELLED", "End CANCELLED (PDD-CANCEL-001)");
    },
  },
  {
    id: "cloud.request-id.duplicate",
    title: "refuses a request ID not above the earlier ones, without touching the live request",
    role: "cloud",
    requirements: ["PDD-SM-005", "PDD-CONN-013", "PDD-CONN-012"],
    async run(p) {
      await p.hello();
      p.send(prefill(5, { cloudTokenBudget: 6 }));
      p.send(prefill(5, { cloudTokenBudget: 6 }));
      const frames: Frame[] = [];
      let dup: Frame | undefined;
      for (;;) {
        const f = await p.until(() => true, "the first request's frames and a DUPLICATE_REQUEST_ID error");
        if (f.body === "error" && field(f, "error.requestId") === 0) dup = f;
        else if (requestIdOf(f) === 5) frames.push(f);
        if (frames.length > 0 && frames[frames.length - 1]!.body === "end") break;
      }
      if (!dup) dup = await p.until((f) => f.body === "error", "a DUPLICATE_REQUEST_ID error", 1000);
      expectThat(
        field(dup, "error.code") === "ERROR_CODE_DUPLICATE_REQUEST_ID",
        "error DUPLICATE_REQUEST_ID with request_id 0 (PDD-SM-005)",
        render(dup),
      );
      checkServed(frames, 5, 6);
      await expectOnlyPong(p, "the connection still open (PDD-SM-005)");
    },
  },
  {
    id: "cloud.request-id.never-opened",
    title: "treats a Takeover for a request never opened as PROTOCOL_VIOLATION",
    role: "cloud",
    requirements: ["PDD-SM-004"],
    async run(p) {
      await p.hello();
      p.send({ takeover: { requestId: 42, index: 0 } });
      await expectConnectionError(p, "ERROR_CODE_PROTOCOL_VIOLATION", 5, "PDD-SM-004");
    },
  },
  {
    id: "cloud.ping",
    title: "answers Ping with a Pong that echoes nonce and sent_at_us",
    role: "cloud",
    requirements: ["PDD-CONN-019"],
    async run(p) {
      await p.hello();
      p.send({ ping: { nonce: "18446744073709551615", sentAtUs: "123456789" } });
      const f = await p.until((x) => x.body === "pong", "a Pong");
      expectThat(
        field(f, "pong.nonce") === "18446744073709551615" && field(f, "pong.pingSentAtUs") === "123456789",
        "nonce and sent_at_us echoed (PDD-CONN-019)",
        render(f),
      );
    },
  },
];

export const CLOUD_CASES: Case[] = [...CONNECTION_AND_REQUEST_CASES, ...PAYLOAD_CASES];
