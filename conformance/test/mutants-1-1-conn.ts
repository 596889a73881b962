/**
 * Broken clouds for the connection, gRPC, WebTransport and timer cases of
 * spec 1.1 (cloud-1-1-conn-cases.ts). Two kinds: a WebSocket proxy that
 * rewrites frames (startMutant, mutants.ts), and the reference cloud itself
 * with one step patched out for the duration of a run, for rules a
 * WebSocket proxy cannot reach (gRPC calls, WebTransport sessions).
 * @internal test support
 */
import { ERROR_SCOPES, ErrorCode } from "../../proto/index.js";
import { CloudConnection } from "../../reference-cloud/connection.js";
import { CloudLink } from "../../reference-device/cloud-link.js";
import { DeviceRun } from "../../reference-device/run.js";
import { grpcClientTiming } from "../../transports/grpc/client.js";
import { callChecks } from "../../transports/grpc/server.js";
import { WtStream } from "../../transports/webtransport/stream.js";
import type { Mutant } from "./mutants.js";
import { HUGE_TPOT_SERVED } from "./mutants-1-1.js";

type Msg = Record<string, unknown>;
const body = (f: Msg) => (f as { body?: string }).body;

/** The reference cloud with one thing broken while `apply`'s undo has not run, reached over `transport`. */
export interface PatchMutant {
  name: string;
  mustFail: string;
  transport: "ws" | "grpc" | "webtransport";
  /** Run against the cloud with a 1 s idle timeout. */
  idle?: boolean;
  apply(): () => void;
}

/** Replaces `obj[key]` until the returned undo runs. */
function patch(obj: object, key: string, make: (orig: (...a: unknown[]) => unknown) => unknown): () => void {
  const rec = obj as Record<string, unknown>;
  const orig = rec[key] as (...a: unknown[]) => unknown;
  rec[key] = make(orig);
  return () => {
    rec[key] = orig;
  };
}

/** A cloud that ignores the device's Goodbye: it never closes after the last End (PDD-CONN-025). */
export const GOODBYE_IGNORED: Mutant = {
  name: "does not close after the device's Goodbye",
  mustFail: "cloud.goodbye.close",
  up: (f) => (body(f) === "goodbye" ? [] : [f]),
};

/**
 * The 1.0 reference: capacity was checked before validation, so a full
 * connection answered every request RESOURCE_EXHAUSTED (REQ-007 step 8).
 */
export const CAPACITY_BEFORE_VALIDATION: Mutant = {
  name: "checks capacity before validating a request",
  mustFail: "cloud.capacity.after-validation",
  down: (f, s) => {
    const live = (s.live as Set<number> | undefined) ?? new Set<number>();
    s.live = live;
    const id = Number(((f[body(f) ?? ""] as Msg | undefined)?.requestId as number | undefined) ?? 0);
    if (body(f) === "accepted") live.add(id);
    if (body(f) === "end") live.delete(id);
    const err = f.error as Msg | undefined;
    // The test cloud allows 8 live requests: a refusal while 8 live says "full".
    if (body(f) === "error" && err && id > 0 && live.size >= 8 && !live.has(id)) {
      err.code = 11; // RESOURCE_EXHAUSTED
      err.retryable = true;
    }
    return [f];
  },
};

/** A cloud whose End waits for the next pacing slot at 1 token a second (PDD-TAKEOVER-010; decodePace 0.5). */
export const END_WAITS_FOR_PACING: Mutant = {
  name: "holds End until its next pacing slot",
  mustFail: "cloud.stop.prompt-end",
  hold: (f) => {
    const end = f.end as Msg | undefined;
    return body(f) === "end" && (end?.reason === 2 || end?.reason === 5) ? 1500 : 0; // TAKEN_OVER, CANCELLED
  },
};

/** A cloud whose HelloAck waits for a free sequence (PDD-CONN-021). */
export const HELLO_ACK_WAITS: Mutant = {
  name: "answers a Hello only once a sequence is free",
  mustFail: "cloud.ack.prompt",
  hold: (f) => (body(f) === "helloAck" ? 6000 : 0),
};

/** A cloud that ignores a Cancel whose code the device may not send, instead of acting on it (PDD-ERR-003). */
export const OUT_OF_SCOPE_CANCEL_IGNORED: Mutant = {
  name: "ignores a Cancel with an out-of-scope code",
  mustFail: "cloud.error.scope",
  up: (f) => (body(f) === "cancel" && (f.cancel as Msg).code === 6 ? [] : [f]), // UNAUTHENTICATED
};

/** A cloud that echoes what it refuses into Error.message (PDD-SEC-007). */
export const ERROR_ECHOES_INPUT: Mutant = {
  name: "echoes the input it refuses into Error.message",
  mustFail: "cloud.error.size",
  down: (f) => {
    const err = f.error as Msg | undefined;
    if (body(f) === "error" && err) err.message = `${String(err.message ?? "")}: ${"x".repeat(2000)}`;
    return [f];
  },
};

/** A cloud that sends a token ID its vocabulary does not have (PDD-MSG-013). */
export const TOKEN_OUTSIDE_VOCAB: Mutant = {
  name: "sends a token ID outside its vocabulary",
  mustFail: "cloud.token.vocab",
  down: (f, s) => {
    if (body(f) === "helloAck") s.vocab = ((f.helloAck as Msg).cloudModel as Msg | undefined)?.vocabSize;
    const t = (f.firstToken as Msg | undefined)?.token as Msg | undefined;
    if (body(f) === "firstToken" && t) t.id = Number(s.vocab);
    return [f];
  },
};

export const PROXY_MUTANTS_1_1_CONN: Mutant[] = [
  ERROR_ECHOES_INPUT,
  TOKEN_OUTSIDE_VOCAB,
  OUT_OF_SCOPE_CANCEL_IGNORED,
  GOODBYE_IGNORED,
  CAPACITY_BEFORE_VALIDATION,
  { ...HUGE_TPOT_SERVED, mustFail: "cloud.request.tpot-max" },
  END_WAITS_FOR_PACING,
  HELLO_ACK_WAITS,
];

/** The 1.0 reference: a gRPC half-close ended the connection, and its requests were halted (item 16). */
export const HALF_CLOSE_AS_LOSS: PatchMutant = {
  name: "halts its requests at a gRPC half-close",
  mustFail: "cloud.grpc.half-close",
  transport: "grpc",
  apply: () => patch(CloudConnection.prototype, "inputEnded", () => async () => undefined),
};

/** The 1.0 reference's gRPC server: no check of encoding, content type or query before Connect (issue 13.6). */
export const MALFORMED_CALLS_SERVED: PatchMutant = {
  name: "serves calls with a gzip encoding, grpc+json or a query string",
  mustFail: "cloud.grpc.encoding",
  transport: "grpc",
  apply: () => patch(callChecks, "refuseMalformedCall", () => () => false),
};

/** The 1.0 reference's WebTransport server: streams the device must not open were left alone (issue 13.6). */
export const PEER_STREAMS_IGNORED: PatchMutant = {
  name: "ignores streams the device must not open",
  mustFail: "cloud.wt.no-control-stream",
  transport: "webtransport",
  apply: () => patch(WtStream.prototype, "refusePeer", () => () => undefined),
};

/** A cloud that closes with whatever code the device's Error carries (PDD-ERR-003): DUPLICATE_REQUEST_ID's 4008. */
export const DEVICE_CODE_TRUSTED: PatchMutant = {
  name: "closes with a code the device may not send",
  mustFail: "cloud.error.scope",
  transport: "ws",
  apply: () => {
    const row = ERROR_SCOPES[ErrorCode.DUPLICATE_REQUEST_ID]!;
    const from = row.from;
    row.from = ["cloud", "device"];
    return () => {
      row.from = from;
    };
  },
};

/** A cloud that says Goodbye when idle but does not close, and serves the request that crosses it (PDD-CONN-028). */
export const IDLE_GOODBYE_WITHOUT_CLOSE: PatchMutant = {
  name: "serves a request that crosses its idle Goodbye",
  mustFail: "cloud.crossed-goodbye",
  transport: "ws",
  idle: true,
  apply: () =>
    patch(
      CloudConnection.prototype,
      "close",
      (orig) =>
        async function (this: CloudConnection, ...a: unknown[]) {
          if (a.length === 0) return; // the graceful close after the idle Goodbye never happens
          return orig.apply(this, a);
        },
    ),
};

export const PATCH_MUTANTS_1_1_CONN: PatchMutant[] = [
  IDLE_GOODBYE_WITHOUT_CLOSE,
  DEVICE_CODE_TRUSTED,
  HALF_CLOSE_AS_LOSS,
  MALFORMED_CALLS_SERVED,
  PEER_STREAMS_IGNORED,
];

/** The reference device with one thing broken while `apply`'s undo has not run, listened for on `listen`. */
export interface DevicePatchMutant {
  name: string;
  mustFail: string;
  listen: "ws" | "grpc";
  apply(): () => void;
}

/** A device that gives up on the HelloAck after 3 s (PDD-CONN-022; the 1.0 device used its connect timeout). */
export const HANDSHAKE_TOO_SHORT: DevicePatchMutant = {
  name: "gives up on the HelloAck after 3 s",
  mustFail: "device.hello.timeout",
  listen: "ws",
  apply: () =>
    patch(
      CloudLink.prototype,
      "awaitAck",
      (orig) =>
        function (this: CloudLink) {
          return orig.call(this, 3000);
        },
    ),
};

/** A gRPC device that half-closes after its Error and never cancels a call the cloud leaves open (PDD-GRPC-006). */
export const NEVER_CANCELS: DevicePatchMutant = {
  name: "never cancels a call the cloud leaves open",
  mustFail: "device.grpc.error-close",
  listen: "grpc",
  apply: () => {
    const was = grpcClientTiming.callEndGraceMs;
    grpcClientTiming.callEndGraceMs = 60_000;
    return () => {
      grpcClientTiming.callEndGraceMs = was;
    };
  },
};

/** A device whose answer waits for the End of its Takeover (PDD-SM-008). */
export const ANSWER_WAITS_FOR_END: DevicePatchMutant = {
  name: "holds its answer until the End of its Takeover",
  mustFail: "device.stop.no-end",
  listen: "ws",
  apply: () =>
    patch(
      DeviceRun.prototype,
      "run",
      (orig) =>
        async function (this: DeviceRun) {
          const report = await orig.call(this);
          const cloud = Reflect.get(this, "cloud") as { ended: boolean }; // a private field of the run
          while (!cloud.ended) await new Promise((r) => setTimeout(r, 50));
          return report;
        },
    ),
};

export const DEVICE_PATCH_MUTANTS_1_1_CONN: DevicePatchMutant[] = [
  HANDSHAKE_TOO_SHORT,
  NEVER_CANCELS,
  ANSWER_WAITS_FOR_END,
];
