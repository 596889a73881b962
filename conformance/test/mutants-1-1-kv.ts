/**
 * Deliberately broken clouds for the spec 1.1 codec, context and refinement
 * cases (cloud-1-1-kv-cases.ts): the reference cloud behind a proxy that
 * breaks one rule. The MessagePack ones need a proxy that speaks MessagePack.
 * @internal test support
 */
import { Packr, Unpackr } from "msgpackr";
import { WebSocket, WebSocketServer } from "ws";
import type { Mutant } from "./mutants.js";

type Msg = Record<string, unknown>;
const body = (f: Msg) => (f as { body?: string }).body;
const END_REASON = { BUDGET_EXHAUSTED: 1, CONTEXT_FULL: 7 } as const;

/** A cloud that sends the 1.1 reason under 1.0 (PDD-VER-007): a full context ends CONTEXT_FULL. */
export const CONTEXT_FULL_UNDER_1_0: Mutant = {
  name: "ends a full context with CONTEXT_FULL under 1.0",
  mustFail: "cloud.request.context-full",
  down: (f) => {
    const end = f.end as Msg | undefined;
    if (body(f) === "end" && end?.reason === END_REASON.BUDGET_EXHAUSTED) end.reason = END_REASON.CONTEXT_FULL;
    return [f];
  },
};

/** The 1.0 rule kept under 1.1: a full context ends BUDGET_EXHAUSTED (PDD-IDX-007). */
export const CONTEXT_FULL_AS_BUDGET: Mutant = {
  name: "ends a full context with BUDGET_EXHAUSTED under 1.1",
  mustFail: "cloud.request.context-full",
  down: (f) => {
    const end = f.end as Msg | undefined;
    if (body(f) === "end" && end?.reason === END_REASON.CONTEXT_FULL) end.reason = END_REASON.BUDGET_EXHAUSTED;
    return [f];
  },
};

/** A cloud that applies 1.1's refine defaults under 1.0 (PDD-VER-007, PDD-REF-008). */
export const REFINE_DEFAULTS_UNDER_1_0: Mutant = {
  name: "grants refine: {} under 1.0",
  mustFail: "cloud.refine.defaults",
  up: (f) => {
    const refine = (f.prefillRequest as Msg | undefined)?.refine as Msg | undefined;
    if (body(f) === "prefillRequest" && refine && !refine.method)
      Object.assign(refine, { method: 1, targetRatio: 0.5 });
    return [f];
  },
};

/** The 1.0 reference under 1.1: refine: {} refused with UNSUPPORTED_FEATURE (issue 14, item 20). */
export const REFINE_DEFAULTS_REFUSED: Mutant = {
  name: "refuses refine: {} under 1.1",
  mustFail: "cloud.refine.defaults",
  up: (f) => {
    const refine = (f.prefillRequest as Msg | undefined)?.refine as Msg | undefined;
    if (body(f) === "prefillRequest" && refine && !refine.method) refine.method = 99; // a method nobody implements
    return [f];
  },
};

/** A cloud that refuses a Hello for a codec entry it does not know (PDD-CONN-007, item 7). */
export const UNKNOWN_CODEC_REFUSED: Mutant = {
  name: "refuses a Hello that lists a codec it does not know",
  mustFail: "cloud.hello.codec-list",
  up: (f) => {
    const hello = f.hello as Msg | undefined;
    if (body(f) === "hello" && (hello?.codecs as number[] | undefined)?.some((c) => c > 2)) hello!.codecs = [2];
    return [f];
  },
};

/** A cloud that announces the output tensor's row count, or any count but the vocabulary's (PDD-FP-006). */
export const VOCAB_SIZE_OFF: Mutant = {
  name: "announces a vocab_size other than the entries of tokenizer.ggml.tokens",
  mustFail: "cloud.fingerprints",
  down: (f) => {
    const model = (f.helloAck as Msg | undefined)?.cloudModel as Msg | undefined;
    if (body(f) === "helloAck" && model) model.vocabSize = Number(model.vocabSize) + 1;
    return [f];
  },
};

/** A cloud that tokenizes without the BOS token the model adds (PDD-TOK-001, PDD-REQ-001). */
export const PROMPT_WITHOUT_BOS: Mutant = {
  name: "counts a text's prompt tokens without the BOS",
  mustFail: "cloud.tokenization",
  down: (f) => {
    const accepted = f.accepted as Msg | undefined;
    if (body(f) === "accepted" && accepted) accepted.promptTokens = Number(accepted.promptTokens) - 1;
    return [f];
  },
};

/** Run against the reference serving spec/vectors/spec.gguf, with the model file given (conformance-1-1-kv.test.ts). */
export const SPEC_MODEL_MUTANTS: Mutant[] = [VOCAB_SIZE_OFF, PROMPT_WITHOUT_BOS];

/** A cloud with no KV hold limit: End waits for credit that never comes (PDD-KV-018). */
export const KV_HOLD_UNBOUNDED: Mutant = {
  name: "holds End for a stalled KV transfer without bound",
  mustFail: "cloud.kv.hold",
  down: (f) => {
    const end = f.end as Msg | undefined;
    const usage = end?.usage as Msg | undefined;
    return body(f) === "end" && Number(usage?.kvBytesSent) > 0 ? [] : [f];
  },
};

/** Run against the reference at 1.0 (conformance-1-1-kv.test.ts; KV_HOLD_UNBOUNDED there against a cloud with a long request-duration limit). */
export const PROTO_MUTANTS_1_1: Mutant[] = [UNKNOWN_CODEC_REFUSED];
/** Run against a cloud that negotiates 1.0 (startCloud's protocolMinor 0). */
export const PROTO_MUTANTS_AT_1_0: Mutant[] = [CONTEXT_FULL_UNDER_1_0, REFINE_DEFAULTS_UNDER_1_0];
/** Run against the reference at 1.1 (conformance-1-1-minor.test.ts). */
export const PROTO_MUTANTS_AT_1_1: Mutant[] = [CONTEXT_FULL_AS_BUDGET, REFINE_DEFAULTS_REFUSED];

/** A MessagePack mutant: a rewrite returns the frames to send instead, or undefined to pass the bytes on. */
export interface MsgpackMutant {
  name: string;
  mustFail: string;
  up?: (f: Msg, state: Msg) => Msg[] | undefined;
  down?: (f: Msg, state: Msg) => Msg[] | undefined;
}

/** The 1.0 question of issue 14, item 7: a cloud that insists on CODEC_PROTO in every Hello. */
const PROTO_REQUIRED: MsgpackMutant = {
  name: "refuses a Hello without CODEC_PROTO",
  mustFail: "cloud.hello.codec-list",
  up: (f) => {
    const hello = f.hello as Msg | undefined;
    if (!hello || (hello.codecs as unknown[]).includes("CODEC_PROTO")) return undefined;
    hello.codecs = ["CODEC_PROTO"]; // what the cloud then sees lacks the connection's codec: UNSUPPORTED_CODEC
    return [f];
  },
};

/** A receiver that takes `{}` for an absent message (PDD-CODEC-014): Accepted then lacks the grant. */
const EMPTY_MAP_AS_ABSENT: MsgpackMutant = {
  name: "treats an empty map as an absent message",
  mustFail: "cloud.codec.msgpack-presence",
  up: (f) => {
    const req = f.prefillRequest as Msg | undefined;
    if (!req) return undefined;
    for (const k of ["kv", "refine"])
      if (req[k] && typeof req[k] === "object" && Object.keys(req[k] as Msg).length === 0) delete req[k];
    return [f];
  },
};

/** A cloud that refines with the float 64 target_ratio as it arrived: one token more where q differs (PDD-CODEC-012). */
const FLOAT64_RATIO_USED: MsgpackMutant = {
  name: "uses a float 64 target_ratio unrounded",
  mustFail: "cloud.codec.float32",
  up: (f, s) => {
    const req = f.prefillRequest as Msg | undefined;
    const ratio = (req?.refine as Msg | undefined)?.targetRatio;
    if (req && typeof ratio === "number") s[`q${req.requestId}`] = Math.round(ratio * 1e6);
    return undefined;
  },
  down: (f, s) => {
    const r = f.refinedPrompt as Msg | undefined;
    const q = r && (s[`q${r.requestId}`] as number | undefined);
    if (!r || q === undefined || (r.method as unknown) !== "REFINE_METHOD_SURPRISAL_DROP") return undefined;
    const n = Number(r.originalTokens);
    r.keptTokens = Math.max(Number(r.keptTokens), Math.min(n, Math.ceil((q * n) / 1e6)));
    return [f];
  },
};

export const MSGPACK_MUTANTS_1_1: MsgpackMutant[] = [PROTO_REQUIRED, EMPTY_MAP_AS_ABSENT, FLOAT64_RATIO_USED];

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "bigint" });
const packr = new Packr({ useRecords: false, moreTypes: false });

/** Rewrites one frame's bytes with `rewrite`; bytes that do not decode pass unchanged. */
function rewrite(b: Buffer, f: ((m: Msg, s: Msg) => Msg[] | undefined) | undefined, state: Msg): Uint8Array[] {
  if (!f) return [b];
  let m: Msg;
  try {
    m = unpackr.unpack(b) as Msg;
  } catch {
    return [b];
  }
  const out = m && typeof m === "object" ? f(m, state) : undefined;
  return out ? out.map((x) => packr.pack(x)) : [b];
}

/** Starts a MessagePack proxy in front of `upstream` (a ws:// URL) applying `m`. */
export async function startMsgpackMutant(
  upstream: string,
  m: MsgpackMutant,
  token?: string,
): Promise<{ url: string; close: () => Promise<void> }> {
  const protocol = "pdd.v1.msgpack";
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: (p) => (p.has(protocol) ? protocol : false),
  });
  wss.on("connection", (client) => {
    const state: Msg = {};
    const server = new WebSocket(upstream, [protocol], {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const pending: Uint8Array[] = [];
    server.on("open", () => {
      for (const b of pending.splice(0)) server.send(b);
    });
    client.on("message", (b: Buffer) => {
      for (const o of rewrite(b, m.up, state)) server.readyState === WebSocket.OPEN ? server.send(o) : pending.push(o);
    });
    server.on("message", (b: Buffer) => {
      for (const o of rewrite(b, m.down, state)) client.send(o);
    });
    client.on("close", () => server.close());
    server.on(
      "close",
      (code, reason) =>
        client.readyState === WebSocket.OPEN &&
        client.close(code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000, reason),
    );
    server.on("error", () => client.terminate());
    client.on("error", () => server.terminate());
  });
  await new Promise((r) => wss.once("listening", r));
  const port = (wss.address() as { port: number }).port;
  return { url: `ws://127.0.0.1:${port}/pdd`, close: () => new Promise((r) => wss.close(() => r())) };
}
