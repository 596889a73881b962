/**
 * The normal device every cloud attack ends with: a well-behaved client that
 * asks for a full answer on one binding and checks it token for token against
 * greedy decoding on a local engine. Liveness is this answer arriving whole,
 * correct and in its normal time, not a Pong.
 */
import { create } from "@bufbuild/protobuf";
import { Engine, ensureDefaultModel } from "../../engine/index.js";
import { greedy } from "../../engine/test/greedy.js";
import { Codec, DeviceFrameSchema, ErrorCode, type CloudFrame } from "../../proto/index.js";
import { connect, type ClientOptions, type DeviceStream } from "../../transports/index.js";
import type { CloudProcess } from "./cloud-process.js";
import { within } from "./wait.js";

export type BindingKey = "ws" | "grpc" | "webtransport";
export interface Binding {
  name: string;
  key: BindingKey;
  codec: "proto" | "msgpack";
}

/** Every binding with every codec it carries. */
export const BINDINGS: readonly Binding[] = [
  { name: "ws/proto", key: "ws", codec: "proto" },
  { name: "ws/msgpack", key: "ws", codec: "msgpack" },
  { name: "grpc/proto", key: "grpc", codec: "proto" },
  { name: "webtransport/proto", key: "webtransport", codec: "proto" },
  { name: "webtransport/msgpack", key: "webtransport", codec: "msgpack" },
];
/** One binding per transport, for attacks where the codec cannot matter. */
export const TRANSPORTS: readonly Binding[] = BINDINGS.filter((b) => b.codec === "proto");

export const PROMPT = "The quick brown fox jumps over the lazy dog, and the naive owls smile.";

let engine: Promise<Engine> | undefined;
/** The local engine the answers are checked against (the model the cloud serves). */
export function localEngine(): Promise<Engine> {
  // 4 sequences, as both peers: a KV image carries the stream count, and the device refuses another (spec §7.2).
  engine ??= Engine.load({ modelPath: ensureDefaultModel("tiny"), threads: 1, sequences: 4 });
  return engine;
}
export async function closeLocalEngine(): Promise<void> {
  const e = engine;
  engine = undefined;
  await (await e)?.close();
}

const answers = new Map<string, number[]>();
/** The greedy answer: the first `n` tokens after `prompt`. */
export async function greedyAnswer(prompt: string, n: number): Promise<number[]> {
  const key = `${n}\u0000${prompt}`;
  let ids = answers.get(key);
  if (!ids) {
    const e = await localEngine();
    ids = await greedy(e, e.tokenize(prompt), n);
    answers.set(key, ids);
  }
  return ids;
}

export function clientOptions(cloud: CloudProcess, b: Binding, token?: string): ClientOptions {
  return { codec: b.codec, serverCertificateHashes: [cloud.certSha256], authToken: token, connectTimeoutMs: 10_000 };
}

export async function openSession(cloud: CloudProcess, b: Binding, token?: string): Promise<DeviceStream> {
  const s = await connect(cloud.urls[b.key], clientOptions(cloud, b, token));
  await s.send(
    create(DeviceFrameSchema, {
      body: {
        case: "hello",
        value: { versions: [{ major: 1, minor: 0 }], codecs: [b.codec === "proto" ? Codec.PROTO : Codec.MSGPACK] },
      },
    }),
  );
  return s;
}

export interface Answer {
  ok: boolean;
  /** Tokens equal to the greedy answer. */
  correct: boolean;
  tokens: number;
  ms: number;
  ttftMs: number;
  /** Largest gap between two tokens, ms. */
  maxGapMs: number;
  error?: string;
}

export interface AnswerOptions {
  prompt?: string;
  budget?: number;
  /** Pacing hint; 0 = as fast as the cloud decodes. */
  tpotUs?: number;
  token?: string;
  deadlineMs?: number;
  /** Called with each token's arrival time (for gap measurements). */
  onToken?: (at: number) => void;
}

/** One full request on a fresh connection: Hello, PrefillRequest, every token to End. */
export async function fullAnswer(cloud: CloudProcess, b: Binding, o: AnswerOptions = {}): Promise<Answer> {
  const prompt = o.prompt ?? PROMPT;
  const budget = o.budget ?? 16;
  const expected = await greedyAnswer(prompt, budget);
  const t0 = performance.now();
  const fail = (error: string): Answer => ({
    ok: false,
    correct: false,
    tokens: 0,
    ms: performance.now() - t0,
    ttftMs: Number.NaN,
    maxGapMs: Number.NaN,
    error,
  });
  let s: DeviceStream;
  try {
    s = await openSession(cloud, b, o.token);
  } catch (e) {
    return fail(`connect: ${(e as Error).message}`);
  }
  try {
    await s.send(
      create(DeviceFrameSchema, {
        body: {
          case: "prefillRequest",
          value: {
            requestId: 1,
            prompt: { case: "text", value: prompt },
            cloudTokenBudget: budget,
            targetTpotUs: o.tpotUs ?? 0,
          },
        },
      }),
    );
    const run = readAnswer(s, o.onToken);
    const got = await within(run, o.deadlineMs ?? 30_000);
    if (!got) return fail(`no End within ${o.deadlineMs ?? 30_000} ms`);
    if (got.error) return fail(got.error);
    const ms = performance.now() - t0;
    const gaps = got.times.slice(1).map((t, i) => t - got.times[i]!);
    return {
      ok: true,
      correct: got.ids.length === expected.length && got.ids.every((t, i) => t === expected[i]),
      tokens: got.ids.length,
      ms,
      ttftMs: (got.times[0] ?? Number.NaN) - t0,
      maxGapMs: gaps.length ? Math.max(...gaps) : 0,
    };
  } catch (e) {
    return fail((e as Error).message);
  } finally {
    await s.close(ErrorCode.UNSPECIFIED).catch(() => undefined);
  }
}

async function readAnswer(
  s: DeviceStream,
  onToken?: (at: number) => void,
): Promise<{ ids: number[]; times: number[]; error?: string }> {
  const ids: number[] = [];
  const times: number[] = [];
  const push = (id: number) => {
    const at = performance.now();
    ids.push(id);
    times.push(at);
    onToken?.(at);
  };
  for await (const f of s as AsyncIterable<CloudFrame>) {
    const b = f.body;
    if (b.case === "firstToken" && b.value.token) push(b.value.token.id);
    else if (b.case === "tokenBatch") for (const t of b.value.tokens) push(t.id);
    else if (b.case === "error") return { ids, times, error: `${ErrorCode[b.value.code]}: ${b.value.message}` };
    else if (b.case === "end") return { ids, times };
  }
  return { ids, times, error: "the connection closed before End" };
}

/** A prompt of about `tokens` tokens of the served model. */
export async function longPrompt(tokens: number): Promise<string> {
  const e = await localEngine();
  let text = PROMPT;
  while (e.tokenize(text).length < tokens) text += ` ${PROMPT}`;
  return text;
}
