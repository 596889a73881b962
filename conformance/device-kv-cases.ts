/**
 * KV cases for a device under test (spec §7), checked by the answer it
 * displays against the suite's own model (oracle.ts, `--model`). The suite
 * plays a cloud with the device's own model and tokenizer: it sends the
 * greedy first token and a KV image whose header is the prompt's but whose
 * KV values are wrecked (oracle.ts decoyImage), then End. A device that did its work shows
 * the greedy continuation of its prompt; one that imported the lying image shows
 * another; one that never decodes shows one token. Without `--model` the
 * cases are "not offered": a random image cannot tell a device that checks
 * from one that skips the check (llama.cpp refuses random bytes either way).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Case, DeviceCaseEnv, DeviceOutcome } from "./case.js";
import {
  accept,
  chunksOf,
  drain,
  end,
  expectThat,
  greet,
  needsKv,
  nextRequest,
  sendKv,
  type Served,
} from "./device-cases.js";
import { decoyImage, expectedAnswer, textOf, withoutCutChar, type ModelOracle } from "./oracle.js";
import { field, NotOffered, type Probe } from "./probe.js";
import type { Frame } from "./wire.js";

/** What one KV case sends and expects: the image bytes, how its frames are spoiled, whose model HelloAck names. */
interface KvPlan {
  /** The image to send: the lying decoy (default), the true image, or random bytes. */
  image?: "decoy" | "true" | "random";
  spoil?: (frames: Frame[], trueImage: Uint8Array) => Frame[];
  model?: "device" | "foreign";
  /** WebTransport: End (with kv_bytes_sent) before the chunks (PDD-KV-011). */
  endFirst?: boolean;
  /** The device may legitimately not ask for KV (a foreign model): its answer is still checked. */
  askOptional?: boolean;
}

function oracleOf(env: DeviceCaseEnv): ModelOracle {
  if (!env.oracle)
    throw new NotOffered(
      "KV cases need the suite's own copy of the device's model (--model FILE) to build a loadable image and know the answer",
    );
  return env.oracle;
}

/** The device's Hello must name the oracle's model, else the oracle's answers are not the device's. */
function sameModel(hello: Frame, oracle: ModelOracle): void {
  const dm = field<Record<string, Uint8Array> | null>(hello, "hello.deviceModel");
  const same =
    dm?.modelFingerprint !== undefined &&
    Buffer.from(dm.modelFingerprint).equals(Buffer.from(oracle.fingerprints.model));
  if (!same) throw new NotOffered("the device does not announce the model given with --model");
}

async function runKvCase(p: Probe, env: DeviceCaseEnv, plan: KvPlan, rule: string): Promise<void> {
  const oracle = oracleOf(env);
  const hello = await greet(p, { model: plan.model ?? "device", tokenizer: "device", kv: true });
  needsKv(hello);
  sameModel(hello, oracle);
  const s = await nextRequest(p, hello);
  const kvAsk = field<Record<string, unknown> | null>(s.request, "prefillRequest.kv");
  if (!kvAsk && !plan.askOptional) throw new NotOffered("the device did not ask for KV for this request");
  const maxTokens = field<number>(s.request, "prefillRequest.maxTokens");
  if (!(maxTokens >= 2)) throw new NotOffered("the device's max_tokens leaves no token of its own to check");
  const prompt = oracle.tokenize(field<string>(s.request, "prefillRequest.text"));
  // Accepted at once, before the image is built: a device still prefilling then waits for the image.
  accept(p, s, { budget: 1, promptTokens: prompt.length, kv: kvAsk ? { granted: true } : undefined });
  const [t0] = await oracle.continuation(prompt, 1);
  if (t0 === undefined) throw new NotOffered("the model ends its answer at once on this prompt");
  const built = await decoyImage(oracle, prompt);
  if (!built) throw new NotOffered("the prompt is too short for a lying image");
  const image = Buffer.from(
    plan.image === "random" ? randomBytes(built.image.length) : plan.image === "true" ? built.trueImage : built.image,
  );
  const credit = BigInt(String(kvAsk?.initialCreditBytes ?? 0));
  if (kvAsk && BigInt(image.length) > credit)
    throw new NotOffered(`the image (${image.length} bytes) is over the device's initial credit (${credit})`);
  const want = await expectedAnswer(oracle, prompt, [t0], maxTokens);
  const afterDecoy = await oracle.continuationAfterImage(built.image, prompt[prompt.length - 1]!, [t0], maxTokens - 1);
  const decoyAnswer = afterDecoy ? textOf(oracle, [t0, ...afterDecoy]) : want;
  if ((plan.image ?? "decoy") === "decoy" && decoyAnswer === want)
    throw new NotOffered("with this model the lying image gives the same answer, so importing it cannot be seen");

  const maxChunk = Number(kvAsk?.maxChunkBytes ?? 0) || 1 << 20;
  const frames = chunksOf(s.id, image, { tokenCount: prompt.length, chunk: Math.min(maxChunk, 64 << 10) });
  const spoiled = plan.spoil ? plan.spoil(frames, built.trueImage) : frames;
  if (kvAsk && !plan.endFirst) sendKv(p, s, spoiled);
  sendCloudToken(p, s, t0, oracle.piece(t0));
  end(p, s, "END_REASON_BUDGET_EXHAUSTED", 1, { kvBytesSent: String(kvAsk ? image.length : 0) });
  if (kvAsk && plan.endFirst) sendKv(p, s, spoiled);
  await drain(p, s);
  await checkAnswer(env, { want, decoyAnswer, rule, oneToken: textOf(oracle, [t0]) });
}

function sendCloudToken(p: Probe, s: Served, id: number, piece: Uint8Array): void {
  p.send({ firstToken: { requestId: s.id, token: { id, piece }, queueUs: 0, prefillUs: 1000 } });
  s.sent = 1;
}

async function checkAnswer(
  env: DeviceCaseEnv,
  o: { want: string; decoyAnswer: string; rule: string; oneToken: string },
): Promise<void> {
  const out = await finishedAnswer(env, o.rule);
  if (!out) return;
  const why =
    out.text === o.decoyAnswer
      ? " — the answer after importing the lying image: the device imported it"
      : out.text === o.oneToken
        ? " — the cloud's token alone: the device did not decode"
        : "";
  expectThat(
    withoutCutChar(out.text) === withoutCutChar(o.want),
    `the greedy continuation of the prompt, as without KV: ${JSON.stringify(o.want.slice(0, 80))} (${o.rule})`,
    `${JSON.stringify(out.text.slice(0, 80))}${why}`,
  );
}

/**
 * The device's answer once it exited 0. Not expectAnswer: its prefix is the suite's marker pieces,
 * and in the KV cases token 0 is the model's own first token.
 */
export async function finishedAnswer(env: DeviceCaseEnv, rule: string): Promise<DeviceOutcome | undefined> {
  const out = await env.outcome();
  if (!out) return undefined;
  expectThat(
    out.exitCode === 0,
    `the device to finish its answer and exit 0 (${rule})`,
    `exit ${out.exitCode}: ${out.stderr.slice(-300)}`,
  );
  return out;
}

function kvCase(
  id: string,
  title: string,
  requirements: string[],
  plan: KvPlan,
  transports?: Case["transports"],
): Case {
  return {
    id,
    title,
    role: "device",
    requirements,
    transports,
    answer: true,
    run: (p, env) => runKvCase(p, env, plan, requirements[0]!),
  };
}

const kvChunkOf = (f: Frame) => f.kvChunk as { crc32: number; imageSha256?: Uint8Array };

export const DEVICE_KV_CASES: Case[] = [
  kvCase(
    "device.kv.bad-crc",
    "discards a loadable KV image when one chunk's CRC is wrong, and computes the prefill: the answer is unaffected",
    ["PDD-KV-007", "PDD-SEC-006"],
    {
      spoil: (frames) => {
        const c = kvChunkOf(frames[Math.min(1, frames.length - 1)]!);
        c.crc32 = (c.crc32 ^ 1) >>> 0;
        return frames;
      },
    },
  ),
  kvCase(
    "device.kv.bad-sha",
    "discards a loadable KV image whose SHA-256 does not match (every chunk CRC right)",
    ["PDD-KV-007"],
    {
      spoil: (frames, trueImage) => {
        kvChunkOf(frames[frames.length - 1]!).imageSha256 = createHash("sha256").update(trueImage).digest();
        return frames;
      },
    },
  ),
  kvCase("device.kv.unloadable", "falls back to its own prefill when an intact image does not load", ["PDD-KV-003"], {
    image: "random",
  }),
  kvCase(
    "device.kv.foreign-model",
    "never imports an image from another model, whatever the cloud grants",
    ["PDD-KV-002"],
    { model: "foreign", askOptional: true },
  ),
  kvCase(
    "device.kv.end-first",
    "on WebTransport, takes End.usage.kv_bytes_sent as the bytes still to come",
    ["PDD-KV-011"],
    { image: "true", endFirst: true },
    ["webtransport"],
  ),
];
