/**
 * Cloud cases for the connection rules spec 1.1 added (issue 14): the Hello
 * and its encoding, credentials, request_id 0, the device's Error and the
 * idle close. Part of CLOUD_1_1_CASES (cloud-1-1-cases.ts), which lists them
 * in the order they run; each fails on the 1.0 reference cloud's behaviour,
 * shown by a mutant in test/mutants-1-1.ts.
 */
import { Packr } from "msgpackr";
import type { Case, CaseEnv } from "./case.js";
import {
  closeCarries,
  codecName,
  eachOnFreshConnection,
  expectConnectionError,
  expectThat,
  helloFrame,
  prefill,
} from "./cloud-helpers.js";
import { CheckFailure, field, isClose, NotOffered, Probe } from "./probe.js";
import { Refused } from "./raw-client.js";
import { render, type Frame } from "./wire.js";

/** A Hello like Probe.hello's, with some fields replaced; does not wait for the answer. */
function sendHello(p: Probe, extra: Record<string, unknown>): void {
  const capabilities = { kvChunks: true, kvFormats: ["KV_FORMAT_LLAMA_SEQ_STATE"], refinement: true };
  p.send(helloFrame(p.codec, { capabilities, clientName: "pdd-conformance/0.1.0", ...extra }));
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
const HELLO = helloFrame("msgpack", { clientName: "pdd-conformance/0.1.0" }).hello;

/** A MessagePack DeviceFrame {hello} (a fixmap) with one more entry of raw bytes. */
function helloWith(entry: number[]): Uint8Array {
  const b = plainPackr.pack({ hello: HELLO });
  if (b[0]! < 0x80 || b[0]! >= 0x8f) throw new Error("helloWith: the Hello is not a fixmap");
  return Uint8Array.from([b[0]! + 1, ...b.subarray(1), ...entry]);
}
const fixstr = (s: string) => [0xa0 + s.length, ...Buffer.from(s)];

export const CODEC_MSGPACK_STRICT: Case = {
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
    await eachOnFreshConnection(p, env, bad, async (q, [what, entry]) => {
      q.sendBytes(helloWith(entry), `a Hello with ${what}`);
      await expectConnectionError(q, "ERROR_CODE_MALFORMED_FRAME", 1, `PDD-CODEC-013: ${what}`);
    });
  },
};

export const CONNECTION_DEVICE_ERROR: Case = {
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
};

export const HELLO_FIRST_FRAME_BODILESS: Case = {
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
    await eachOnFreshConnection(p, env, firsts, async (q, [what, send]) => {
      send(q);
      await expectConnectionError(q, "ERROR_CODE_PROTOCOL_VIOLATION", 5, `PDD-CONN-002, first frame: ${what}`);
    });
  },
};

export const AUTH_PRECEDENCE: Case = {
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
};

export const HELLO_VERSIONS: Case = {
  id: "cloud.hello.versions",
  title: "refuses a Hello with no versions, one major twice, or more than 8 entries in a list",
  role: "cloud",
  requirements: ["PDD-VER-009", "PDD-LIMIT-007"],
  async run(p, env) {
    const own = codecName(p.codec);
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
};

export const REQUEST_ID_ZERO: Case = {
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
};

export const IDLE: Case = {
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
};

export const HELLO_MAX_FRAME_MINIMUM: Case = {
  id: "cloud.hello.max-frame-minimum",
  title: "refuses a Hello whose max_frame_bytes is below 64 KiB with INVALID_ARGUMENT, and no HelloAck",
  role: "cloud",
  requirements: ["PDD-MSG-012"],
  async run(p) {
    sendHello(p, { maxFrameBytes: 200 });
    await expectConnectionError(p, "ERROR_CODE_INVALID_ARGUMENT", 9, "PDD-MSG-012");
  },
};
