/**
 * Cloud cases for the connection, gRPC, WebTransport and timer rules of spec
 * 1.1 (issue 14): each fails on a cloud that keeps the 1.0 reference's
 * behaviour, shown by a broken peer in test/mutants-1-1-conn.ts.
 */
import type { Case } from "./case.js";
import { codeAllowed } from "./error-scopes.js";
import { closeCarries, expectConnectionError, expectRequestError, expectThat, prefill } from "./cloud-cases.js";
import { CheckFailure, field, isClose, NotOffered, Probe, requestIdOf } from "./probe.js";
import { encodeDevice, render, type Frame } from "./wire.js";

/** Frames of request `id` up to its End; checks that End says the whole budget was served. */
async function servedToEnd(p: Probe, id: number, rule: string): Promise<Frame> {
  const frames = await p.collect(id, 15_000);
  const end = frames[frames.length - 1]!;
  const reason = field<string>(end, "end.reason");
  expectThat(
    reason === "END_REASON_BUDGET_EXHAUSTED" || reason === "END_REASON_EOS",
    `the started request run to its End (${rule})`,
    render(end),
  );
  return end;
}

/**
 * After the last End the cloud closes gracefully, and soon: close 1000, gRPC
 * OK, session code 0, with no frame before it (PDD-CONN-025). The rule says
 * "as soon as"; 5 s leaves a loaded machine room.
 */
async function expectGracefulClose(p: Probe, rule: string): Promise<void> {
  const r = await p.recv(5000);
  if (r === undefined) throw new CheckFailure(`a graceful close once every request has ended (${rule})`, "none in 5 s");
  if (!isClose(r)) throw new CheckFailure(`no frame after the last End but the close (${rule})`, render(r as Frame));
  const c = r.closed.code;
  expectThat(
    c === 1000 || c === 0,
    `a graceful close: 1000, gRPC OK or session code 0 (${rule})`,
    `close ${c} ${r.closed.reason}`,
  );
}

/** One round trip, ms, measured with Ping/Pong (PDD-CONN-019). */
async function roundTrip(p: Probe): Promise<number> {
  const t0 = performance.now();
  p.send({ ping: { nonce: "41" } });
  await p.until((f) => f.body === "pong", "a Pong");
  return performance.now() - t0;
}

/** Sends `stop` for request `id` and returns the ms until its End, after checking End's reason. */
async function msToEnd(p: Probe, id: number, stop: Frame, reason: string): Promise<number> {
  const t0 = performance.now();
  p.send(stop);
  const end = await p.until((f) => requestIdOf(f) === id && f.body === "end", `End of request ${id}`, 10_000);
  const ms = performance.now() - t0;
  expectThat(field(end, "end.reason") === reason, `End{${reason}}`, render(end));
  return ms;
}

export const CLOUD_1_1_CONN_CASES: Case[] = [
  {
    id: "cloud.goodbye.close",
    title: "after the device's Goodbye, closes gracefully as soon as the started request has ended",
    role: "cloud",
    requirements: ["PDD-CONN-025"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 12, targetTpotUs: 20_000 }));
      await p.until((f) => requestIdOf(f) === 1 && f.body === "firstToken", "FirstToken");
      p.send({ goodbye: {} });
      await servedToEnd(p, 1, "PDD-CONN-015");
      await expectGracefulClose(p, "PDD-CONN-025");
    },
  },
  {
    id: "cloud.grpc.half-close",
    title: "takes a gRPC half-close as the device's Goodbye: runs the started request to End, then ends the call OK",
    role: "cloud",
    transports: ["grpc"],
    requirements: ["PDD-CONN-026", "PDD-GRPC-006"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 12, targetTpotUs: 20_000 }));
      await p.until((f) => requestIdOf(f) === 1 && f.body === "firstToken", "FirstToken");
      p.log.push("half-close of the request stream");
      p.session.halfClose!();
      await servedToEnd(p, 1, "PDD-CONN-026: a half-close is a Goodbye, not a loss");
      await expectGracefulClose(p, "PDD-CONN-026, PDD-GRPC-006: status OK after the last End");
    },
  },
  {
    id: "cloud.capacity.after-validation",
    title: "at its live-request limit, refuses an invalid request for what is wrong with it, not RESOURCE_EXHAUSTED",
    role: "cloud",
    requirements: ["PDD-REQ-007"],
    async run(p) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxConcurrentRequests") || 8;
      if (max > 64) throw new NotOffered(`max_concurrent_requests is ${max}; the case fills at most 64`);
      for (let id = 1; id <= max; id++) p.send(prefill(id, { cloudTokenBudget: 256, targetTpotUs: 100_000 }));
      for (let n = 0; n < max; n++) await p.until((f) => f.body === "accepted", `${max} Accepted`);
      // Full: each of these fails an earlier step of PDD-REQ-007 than capacity (step 8).
      let id = max;
      for (const [what, extra] of [
        ["an empty prompt (step 3)", { text: "" }],
        ["cloud_token_budget 0 (step 4)", { cloudTokenBudget: 0 }],
        ["target_tpot_us 2^32 - 1 (step 4)", { targetTpotUs: 4_294_967_295 }],
      ] as const) {
        p.send(prefill(++id, extra));
        await expectRequestError(p, id, "ERROR_CODE_INVALID_ARGUMENT", `PDD-REQ-007: ${what} before capacity`);
      }
      p.send(prefill(++id));
      await expectRequestError(p, id, "ERROR_CODE_RESOURCE_EXHAUSTED", "PDD-REQ-007 step 8, PDD-LIMIT-004");
      for (let r = 1; r <= max; r++) p.send({ cancel: { requestId: r, code: "ERROR_CODE_CANCELLED" } });
    },
  },
  {
    id: "cloud.grpc.encoding",
    title:
      "ends at once a call with an unknown grpc-encoding (UNIMPLEMENTED), refuses grpc+json (415) and a path with a query",
    role: "cloud",
    transports: ["grpc"],
    requirements: ["PDD-GRPC-007"],
    async run(p, env) {
      p.close();
      const call = env.target.grpcCall!;
      const hello = encodeDevice(
        { hello: { versions: [{ major: 1, minor: 0 }], codecs: ["CODEC_PROTO"], clientName: "pdd-conformance/0.1.0" } },
        "proto",
      );
      const session = { path: "/pdd.v1.PdDeviceService/Session", contentType: "application/grpc", waitMs: 5000 };
      const gzip = await call(hello, { ...session, encoding: "gzip" });
      expectThat(
        gzip !== "open" && gzip.grpcStatus === "12",
        "a call with grpc-encoding gzip ended at once with status UNIMPLEMENTED (12) (PDD-GRPC-007)",
        JSON.stringify(gzip),
      );
      const json = await call(hello, { ...session, contentType: "application/grpc+json" });
      expectThat(
        json !== "open" && json.http === 415,
        "a call with content type application/grpc+json refused with HTTP 415 (PDD-GRPC-007)",
        JSON.stringify(json),
      );
      const unknown = await call(hello, { ...session, path: "/pdd.v1.PdDeviceService/NoSuchMethod" });
      const query = await call(hello, { ...session, path: `${session.path}?codec=proto` });
      expectThat(
        query !== "open" && (query.grpcStatus === "12" || JSON.stringify(query) === JSON.stringify(unknown)),
        `a Session path with a query string ended at once, UNIMPLEMENTED (12) or as an unknown method ` +
          `(${JSON.stringify(unknown)}) (PDD-GRPC-007)`,
        JSON.stringify(query),
      );
    },
  },
  {
    id: "cloud.wt.no-control-stream",
    title:
      "closes a WebTransport session without a control stream (TIMEOUT), and one where the device opens a " +
      "unidirectional or a second bidirectional stream (PROTOCOL_VIOLATION)",
    role: "cloud",
    transports: ["webtransport"],
    codecs: ["proto"],
    requirements: ["PDD-WT-006"],
    async run(p, env) {
      const ping = encodeDevice({ ping: { nonce: "1" } }, "proto");
      const framed = Buffer.concat([Buffer.alloc(4), ping]);
      framed.writeUInt32BE(ping.length);
      for (const kind of ["uni", "bidi"] as const) {
        const q = kind === "uni" ? p : await env.open();
        await q.hello();
        q.log.push(`the device opens a ${kind === "uni" ? "unidirectional" : "second bidirectional"} stream`);
        q.session.openStream!(kind, framed);
        await expectConnectionError(
          q,
          "ERROR_CODE_PROTOCOL_VIOLATION",
          5,
          `PDD-WT-006: a device-opened ${kind} stream`,
        );
      }
      const silent = new Probe(await env.target.raw({ noControl: true }), "proto", 15_000);
      silent.transport = "webtransport";
      try {
        // The default handshake timeout is 10 s (§11); a cloud may use less.
        await expectConnectionError(
          silent,
          "ERROR_CODE_TIMEOUT",
          19,
          "PDD-WT-006: no control stream",
          "webtransport",
          15_000,
        );
      } finally {
        silent.close();
      }
    },
  },
  {
    id: "cloud.request.tpot-max",
    title: "serves target_tpot_us 1,000,000 and refuses 1,000,001 and 2^32 - 1 with INVALID_ARGUMENT",
    role: "cloud",
    requirements: ["PDD-REQ-009"],
    async run(p) {
      await p.hello();
      p.send(prefill(1, { cloudTokenBudget: 1, targetTpotUs: 1_000_000 }));
      const frames = await p.collect(1);
      expectThat(
        frames[0]?.body === "accepted",
        "target_tpot_us 1,000,000 served (PDD-REQ-009)",
        frames.map((f) => f.body).join(", "),
      );
      for (const [id, tpot] of [
        [2, 1_000_001],
        [3, 4_294_967_295],
      ] as const) {
        p.send(prefill(id, { targetTpotUs: tpot }));
        await expectRequestError(p, id, "ERROR_CODE_INVALID_ARGUMENT", `PDD-REQ-009: target_tpot_us ${tpot}`);
      }
    },
  },
  {
    id: "cloud.stop.prompt-end",
    title: "answers a Takeover and a Cancel with End within 1 s, though the request is paced at 1 token a second",
    role: "cloud",
    requirements: ["PDD-TAKEOVER-010", "PDD-CANCEL-001"],
    async run(p) {
      await p.hello();
      const rtt = await roundTrip(p);
      // 1 token a second: a cloud that waits for its next pacing slot holds End up to a second or more.
      const paced = { cloudTokenBudget: 64, targetTpotUs: 1_000_000 };
      const stops: [Frame, string][] = [
        [{ takeover: { requestId: 1, index: 1 } }, "END_REASON_TAKEN_OVER"],
        [{ cancel: { requestId: 2, code: "ERROR_CODE_CANCELLED" } }, "END_REASON_CANCELLED"],
      ];
      for (const [i, [stop, reason]] of stops.entries()) {
        const id = i + 1;
        p.send(prefill(id, paced));
        await p.until((f) => requestIdOf(f) === id && f.body === "firstToken", "FirstToken", 15_000);
        const ms = await msToEnd(p, id, stop, reason);
        expectThat(
          ms <= 1000 + rtt,
          `End within 1 s + one round trip (${Math.round(rtt)} ms) of the ${stop.body} (PDD-TAKEOVER-010)`,
          `${Math.round(ms)} ms`,
        );
      }
    },
  },
  {
    id: "cloud.ack.prompt",
    title: "answers a Hello within 5 s while another connection holds every request it allows",
    role: "cloud",
    requirements: ["PDD-CONN-021"],
    async run(p, env) {
      const ack = (await p.hello())!;
      const max = field<number>(ack, "helloAck.limits.maxConcurrentRequests") || 8;
      const busy = Math.min(max, 64);
      for (let id = 1; id <= busy; id++) p.send(prefill(id, { cloudTokenBudget: 256, targetTpotUs: 100_000 }));
      for (let n = 0; n < busy; n++) await p.until((f) => f.body === "accepted", `${busy} Accepted`);
      const q = await env.open();
      const t0 = performance.now();
      await q.hello({ await: false });
      const r = await q.recv(5000);
      const ms = Math.round(performance.now() - t0);
      expectThat(
        r !== undefined && !isClose(r) && (r as Frame).body === "helloAck",
        "HelloAck within 5 s of the Hello, whatever the load (PDD-CONN-021)",
        r === undefined
          ? "nothing within 5 s"
          : isClose(r)
            ? `close ${r.closed.code}`
            : `${render(r as Frame)} after ${ms} ms`,
      );
      for (let id = 1; id <= busy; id++) p.send({ cancel: { requestId: id, code: "ERROR_CODE_CANCELLED" } });
    },
  },
  {
    id: "cloud.error.scope",
    title:
      "sends each error code only in a scope §13.2 gives the cloud, acts on a device frame whose code is out of " +
      "scope, and takes such a code in the device's Error as INTERNAL",
    role: "cloud",
    requirements: ["PDD-ERR-003"],
    async run(p, env) {
      await p.hello();
      // What the cloud sends: a connection-scope refusal, request refusals, a grant refusal.
      p.send(prefill(1, { cloudTokenBudget: 1 }));
      p.send(prefill(1));
      p.send(prefill(2, { text: "" }));
      p.send(prefill(3, { kv: { format: "KV_FORMAT_LLAMA_SEQ_STATE" } })); // no device_model: refused as a grant
      let ends = 0;
      while (ends < 3) {
        const f = await p.until(
          (x) => ["error", "accepted", "end"].includes(x.body!),
          "the answers of requests 1 to 3",
        );
        if (f.body === "end") ends++;
        const [code, scope] =
          f.body === "error"
            ? [field<string>(f, "error.code"), field<number>(f, "error.requestId") === 0 ? "conn" : "req"]
            : [field<string>(f, "accepted.kv.refusal") ?? "", "grant"];
        if (f.body === "end" || !code || code === "ERROR_CODE_UNSPECIFIED") continue;
        expectThat(
          codeAllowed(code, scope as "conn" | "req" | "grant", "cloud"),
          `a code §13.2 lets the cloud send in scope ${scope} (PDD-ERR-003)`,
          render(f),
        );
      }
      // A Cancel with a code the device may not send (UNAUTHENTICATED) is still a Cancel.
      p.send(prefill(4, { cloudTokenBudget: 256, targetTpotUs: 20_000 }));
      await p.until((f) => requestIdOf(f) === 4 && f.body === "firstToken", "FirstToken");
      p.send({ cancel: { requestId: 4, code: "ERROR_CODE_UNAUTHENTICATED" } });
      const end = await p.until((f) => requestIdOf(f) === 4 && f.body === "end", "End of the cancelled request");
      expectThat(
        field(end, "end.reason") === "END_REASON_CANCELLED",
        "End{CANCELLED}: a Cancel acts as a Cancel, whatever its code (PDD-ERR-003)",
        render(end),
      );
      // The device's Error with a cloud-only code ends the connection as INTERNAL.
      const q = await env.open();
      await q.hello();
      q.send({ error: { requestId: 0, code: "ERROR_CODE_DUPLICATE_REQUEST_ID", message: "out of scope" } });
      const r = await q.recv(5000);
      if (r === undefined || !isClose(r))
        throw new CheckFailure(
          "the connection closed (PDD-CONN-024)",
          r === undefined ? "nothing in 5 s" : render(r as Frame),
        );
      expectThat(
        closeCarries(q.transport ?? "websocket", r.closed.code, 20),
        "a close carrying INTERNAL for a code the device may not send: 4020, gRPC 13, session 20 (PDD-ERR-003)",
        `close ${r.closed.code} ${r.closed.reason}`,
      );
    },
  },
  {
    id: "cloud.error.size",
    title: "keeps Error.message within 1,024 bytes and free of the credential, however large the input it refuses",
    role: "cloud",
    requirements: ["PDD-SEC-007"],
    async run(p, env) {
      const big = "x".repeat(60_000);
      const sessions: [string, (q: Probe) => Promise<void>][] = [
        [
          "a 60 KB client_name with an unknown major version",
          async (q) =>
            q.send({
              hello: {
                versions: [{ major: 9, minor: 0 }],
                codecs: [q.codec === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK"],
                clientName: big,
              },
            }),
        ],
        [
          "a Cancel with a 60 KB reason for a request never opened",
          async (q) => {
            await q.hello();
            q.send({ cancel: { requestId: 99, code: "ERROR_CODE_CANCELLED", reason: big } });
          },
        ],
        [
          "a 60 KB prompt with cloud_token_budget 0",
          async (q) => {
            await q.hello();
            q.send(prefill(1, { text: big, cloudTokenBudget: 0 }));
          },
        ],
      ];
      for (const [i, [what, provoke]] of sessions.entries()) {
        const q = i === 0 ? p : await env.open();
        await provoke(q);
        const err = await q.until((f) => f.body === "error", `an Error for ${what}`);
        const message = field<string>(err, "error.message") ?? "";
        const bytes = Buffer.byteLength(message, "utf8");
        expectThat(bytes <= 1024, `Error.message of at most 1,024 bytes for ${what} (PDD-SEC-007)`, `${bytes} bytes`);
        const token = env.target.token;
        expectThat(
          !token || !message.includes(token),
          "no credential in Error.message (PDD-SEC-007)",
          "the suite's credential in it",
        );
        q.close();
      }
    },
  },
  {
    id: "cloud.token.vocab",
    title: "sends only token IDs below the vocab_size its HelloAck announces",
    role: "cloud",
    requirements: ["PDD-MSG-013"],
    async run(p) {
      const ack = (await p.hello())!;
      const vocab = Number(field(ack, "helloAck.cloudModel.vocabSize"));
      p.send(prefill(1, { cloudTokenBudget: 16 }));
      const frames = await p.collect(1);
      const ids = frames.flatMap((f) =>
        f.body === "firstToken"
          ? [field<number>(f, "firstToken.token.id")]
          : f.body === "tokenBatch"
            ? field<{ id: number }[]>(f, "tokenBatch.tokens").map((t) => t.id)
            : [],
      );
      const bad = ids.find((id) => !(id >= 0 && id < vocab));
      expectThat(
        ids.length > 0 && bad === undefined,
        `every token ID below vocab_size ${vocab} (PDD-MSG-013)`,
        bad === undefined ? `${ids.length} tokens` : `token ID ${bad}`,
      );
    },
  },
  {
    id: "cloud.crossed-goodbye",
    title:
      "never starts a request that crosses its idle Goodbye: UNAVAILABLE and End, or no frame for it before a graceful close",
    role: "cloud",
    requirements: ["PDD-CONN-028", "PDD-CONN-014"],
    async run(p) {
      const ack = (await p.hello())!;
      const idle = field<number>(ack, "helloAck.limits.idleTimeoutMs") || 60_000;
      if (idle > 15_000) throw new NotOffered(`idle_timeout_ms is ${idle}; the case waits at most 15 s`);
      await p.until((f) => f.body === "goodbye", "the idle Goodbye (PDD-CONN-020)", idle + 5000);
      // A request the device had on the wire when the Goodbye left the cloud.
      p.send(prefill(1));
      for (;;) {
        const r = await p.recv(5000);
        if (r === undefined) throw new CheckFailure("a close after the idle Goodbye (PDD-CONN-025)", "none in 5 s");
        if (isClose(r)) {
          expectThat(
            r.closed.code === 1000 || r.closed.code === 0,
            "a graceful close (PDD-CONN-025)",
            `close ${r.closed.code}`,
          );
          return;
        }
        const f = r as Frame;
        if (requestIdOf(f) !== 1) continue;
        const refused =
          (f.body === "error" && field(f, "error.code") === "ERROR_CODE_UNAVAILABLE") ||
          (f.body === "end" && field(f, "end.reason") === "END_REASON_ERROR");
        expectThat(
          refused,
          "a request after the cloud's Goodbye is not started: Error{UNAVAILABLE} and End, or nothing (PDD-CONN-014, PDD-CONN-028)",
          render(f),
        );
      }
    },
  },
];
