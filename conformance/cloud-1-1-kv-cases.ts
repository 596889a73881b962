/**
 * Cloud cases for spec 1.1's codec, context and refinement rules (issue 14,
 * items 7, 10, 20, 21). A case about a rule that applies only once 1.1 is
 * negotiated (PDD-VER-007) offers 1.1 and checks the rule of the version the
 * HelloAck names: the 1.1 behaviour, or the 1.0 one it replaces.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SPEC_DIR } from "../spec/index.js";
import type { Case } from "./case.js";
import {
  checkServed,
  codecName,
  contextLimits,
  expectThat,
  fillContext,
  helloFrame,
  kvGranted,
  kvPrefill,
  kvSession,
  prefill,
  refinementOffered,
  reopenAsCloudModel,
  tokenIdsOffered,
} from "./cloud-helpers.js";
import { walkMsgpack } from "./msgpack-walk.js";
import { CheckFailure, field, NotOffered, type Probe, requestIdOf } from "./probe.js";
import { render, type Frame } from "./wire.js";

const V1_1 = [{ major: 1, minor: 1 }];

/** The minor of the version the cloud's HelloAck names. */
const negotiatedMinor = (p: Probe) => field<number>(p.ack!, "helloAck.version.minor") ?? 0;

/** The RefinedPrompt of a request `frames` holds, or NotOffered. */
function refinedOf(frames: Frame[], what: string): Frame {
  const r = frames.find((f) => f.body === "refinedPrompt");
  if (!r) throw new NotOffered(`no RefinedPrompt for ${what}`);
  return r;
}

/** A Hello with the given codec list (entries may be numbers the schema does not name). */
function helloListing(p: Probe, codecs: (string | number)[]): void {
  p.sendUnchecked(helloFrame(p.codec, { codecs, clientName: "pdd-conformance/0.1.0" }));
}

/** A float64 just above 0.5000005 that is 0.50000047683… as a float32: q is 500,000 as a float32, 500,001 as it arrives. */
const RATIO_ROUNDING_TO_HALF = 0.500000503;

interface TokenVectors {
  modelFingerprint: string;
  vectors: { text: string; ids: number[] }[];
}

/** The spec's tokenization vectors (spec/vectors/, Appendix C.3), or undefined where they are not installed. */
function tokenVectors(): TokenVectors | undefined {
  const dir = join(SPEC_DIR, "vectors");
  if (!existsSync(join(dir, "tokenization.json"))) return undefined;
  const fp = JSON.parse(readFileSync(join(dir, "fingerprints.json"), "utf8")) as { model_fingerprint: string };
  const t = JSON.parse(readFileSync(join(dir, "tokenization.json"), "utf8")) as TokenVectors;
  return { modelFingerprint: fp.model_fingerprint, vectors: t.vectors };
}

/** The token IDs a Llama-Seq-State image names in its header (§7.2): Magic, Version, Token-Count, Token…. */
function seqStateTokens(image: Buffer): number[] | undefined {
  if (image.length < 12 || image.readUInt32LE(0) !== 0x67677371) return undefined;
  const n = image.readUInt32LE(8);
  if (image.length < 12 + 4 * n) return undefined;
  return Array.from({ length: n }, (_, i) => image.readUInt32LE(12 + 4 * i));
}

/** The KV hold limit (PDD-KV-018), and the slack the case allows a loaded machine on top of it. */
const KV_HOLD_MS = 10_000;
const KV_HOLD_SLACK_MS = 2_000;
const KV_CHUNK = 4096;

/** A KV request whose credit covers one chunk: the transfer stalls after it unless the device grants more. */
const starvedKv = (q: Probe, id: number, budget: number, targetTpotUs: number): Frame =>
  kvPrefill(q, id, { repeats: 20, budget, targetTpotUs, maxChunkBytes: KV_CHUNK, credit: KV_CHUNK });

/**
 * Reads request `id` to its End: the KV bytes received, when its last token
 * came, and the End. An Error is allowed only as `timeoutAllowed` says: a
 * request-duration limit (PDD-ORD-006) shorter than the hold may end it first.
 */
async function readToEnd(
  q: Probe,
  id: number,
  what: string,
  timeoutAllowed = false,
): Promise<{ kvBytes: number; lastTokenAt: number; end: Frame }> {
  let kvBytes = 0;
  let lastTokenAt = performance.now();
  for (;;) {
    const f = await q.until((x) => requestIdOf(x) === id, what, KV_HOLD_MS + KV_HOLD_SLACK_MS + 3000);
    if (f.body === "kvChunk") kvBytes += field<Uint8Array>(f, "kvChunk.data").length;
    if (f.body === "firstToken" || f.body === "tokenBatch") lastTokenAt = performance.now();
    if (f.body === "error" && !(timeoutAllowed && field(f, "error.code") === "ERROR_CODE_TIMEOUT"))
      throw new CheckFailure("no Error: an abandoned KV transfer is not one (PDD-KV-017)", render(f));
    if (f.body === "end") return { kvBytes, lastTokenAt, end: f };
  }
}

export const CLOUD_1_1_KV_CASES: Case[] = [
  {
    id: "cloud.hello.codec-list",
    title: "serves a Hello whose codec list has the connection's codec, whatever else it lists or omits",
    role: "cloud",
    requirements: ["PDD-CONN-007"],
    async run(p, env) {
      const mine = codecName(p.codec);
      // A codec number this version does not name, beside the connection's: informative (PDD-CONN-007).
      helloListing(p, [mine, 9]);
      const ack = await p.until(() => true, "HelloAck to a Hello listing an unknown codec too (PDD-CONN-007)");
      expectThat(
        ack.body === "helloAck",
        "HelloAck to a Hello listing an unknown codec too (PDD-CONN-007)",
        render(ack),
      );
      if (p.codec !== "msgpack") return;
      // A MessagePack-only list: CODEC_PROTO omitted is not the cloud's to refuse (issue 14, item 7).
      const q = await env.open();
      helloListing(q, ["CODEC_MSGPACK"]);
      const ack2 = await q.until(() => true, "HelloAck to a Hello listing only CODEC_MSGPACK (PDD-CONN-007)");
      expectThat(
        ack2.body === "helloAck",
        "HelloAck to a Hello listing only CODEC_MSGPACK (PDD-CONN-007)",
        render(ack2),
      );
      q.close();
    },
  },
  {
    id: "cloud.codec.msgpack-presence",
    title: "treats a present empty message `{}` as present and nil as absent, and writes Accepted's grants as maps",
    role: "cloud",
    requirements: ["PDD-CODEC-014", "PDD-MSG-008"],
    codecs: ["msgpack"],
    async run(p) {
      await p.hello();
      const base = { text: "Tell me about the fox.", cloudTokenBudget: 2 };
      p.sendRaw({ prefillRequest: { requestId: 1, ...base, kv: {}, refine: {} } }, "kv: {} and refine: {}");
      const accepted = await p.until((f) => requestIdOf(f) === 1, "Accepted for request 1");
      const types = walkMsgpack(p.raw[p.raw.length - 1]!).types;
      for (const k of ["kv", "refine"])
        expectThat(
          types.get(`accepted.${k}`) === "map" && field(accepted, `accepted.${k}`) !== null,
          `Accepted.${k} present, as a map, for a present empty ${k} {} (PDD-CODEC-014, PDD-MSG-008)`,
          `${types.get(`accepted.${k}`) ?? "no key"}: ${render(accepted)}`,
        );
      await p.collect(1);
      p.sendRaw({ prefillRequest: { requestId: 2, ...base, kv: null, refine: null } }, "kv: nil and refine: nil");
      const second = await p.until((f) => requestIdOf(f) === 2, "Accepted for request 2");
      const types2 = walkMsgpack(p.raw[p.raw.length - 1]!).types;
      for (const k of ["kv", "refine"])
        expectThat(
          (types2.get(`accepted.${k}`) ?? "nil") === "nil" && field(second, `accepted.${k}`) === null,
          `no Accepted.${k} (omitted or nil) for ${k}: nil (PDD-CODEC-014, PDD-MSG-008)`,
          `${types2.get(`accepted.${k}`)}: ${render(second)}`,
        );
      await p.collect(2);
    },
  },
  {
    id: "cloud.codec.float32",
    title: "rounds a float field that arrives as a MessagePack float 64 to float32 before it uses it",
    role: "cloud",
    requirements: ["PDD-CODEC-012"],
    codecs: ["msgpack"],
    needs: ["refinement"],
    async run(p) {
      await p.hello();
      refinementOffered(p);
      // As a float32 the ratio is 500,000 millionths, so an even prompt keeps exactly half; taken as the
      // float64 it arrives as, it is 500,001 and keeps one token more (PDD-CODEC-012, PDD-REF-004).
      let text = "The quick brown fox jumps over the lazy dog and the owls smile";
      // (msgpackr writes a non-integral number as float 64.)
      for (let id = 1; id <= 4; id++, text += " fox") {
        const refine = { method: "REFINE_METHOD_SURPRISAL_DROP", targetRatio: RATIO_ROUNDING_TO_HALF };
        p.sendRaw({ prefillRequest: { requestId: id, text, cloudTokenBudget: 1, refine } }, "target_ratio as float 64");
        const r = refinedOf(await p.collect(id), `target_ratio ${RATIO_ROUNDING_TO_HALF}`);
        const n = field<number>(r, "refinedPrompt.originalTokens");
        if (n % 2 !== 0) continue;
        const kept = field<number>(r, "refinedPrompt.keptTokens");
        expectThat(
          kept === n / 2,
          `${n / 2} of ${n} tokens kept: target_ratio ${RATIO_ROUNDING_TO_HALF} is 0.50000047683 as a float32 (PDD-CODEC-012)`,
          `${kept} kept`,
        );
        return;
      }
      throw new NotOffered("no prompt of an even number of tokens within 4 tries");
    },
  },
  {
    id: "cloud.refine.defaults",
    title: "grants refine: {} as the surprisal drop to half the prompt under 1.1, and refuses it under 1.0",
    role: "cloud",
    requirements: ["PDD-REF-008", "PDD-REF-001", "PDD-VER-007"],
    needs: ["refinement"],
    async run(p) {
      await p.hello({ versions: V1_1 });
      refinementOffered(p);
      const minor = negotiatedMinor(p);
      const asks: [string, Record<string, unknown>][] = [
        ["refine: {}", {}],
        ["a method with target_ratio 0", { method: "REFINE_METHOD_SURPRISAL_DROP" }],
      ];
      for (const [i, [what, refine]] of asks.entries()) {
        p.send(prefill(i + 1, { text: "The quick brown fox jumps over the lazy dog.", cloudTokenBudget: 1, refine }));
        const frames = await p.collect(i + 1);
        checkServed(frames, i + 1, 1);
        const grant = field<Record<string, unknown> | null>(frames[0]!, "accepted.refine");
        if (minor === 0) {
          const want = i === 0 ? "ERROR_CODE_UNSUPPORTED_FEATURE" : "ERROR_CODE_INVALID_ARGUMENT";
          expectThat(
            grant?.granted !== true && grant?.refusal === want,
            `under 1.0, ${what} refused with ${want} (PDD-REF-001, PDD-VER-007)`,
            render(frames[0]!),
          );
          continue;
        }
        expectThat(grant?.granted === true, `under 1.1, ${what} granted (PDD-REF-008)`, render(frames[0]!));
        const r = refinedOf(frames, what);
        const n = field<number>(r, "refinedPrompt.originalTokens");
        expectThat(
          field<number>(r, "refinedPrompt.keptTokens") === Math.ceil(n / 2),
          `${Math.ceil(n / 2)} of ${n} tokens kept: ratio 0.5 by default (PDD-REF-008, PDD-REF-004)`,
          render(r),
        );
      }
    },
  },
  {
    id: "cloud.request.context-full",
    title: "ends a request whose tokens fill the context with CONTEXT_FULL under 1.1, BUDGET_EXHAUSTED under 1.0",
    role: "cloud",
    requirements: ["PDD-IDX-007", "PDD-IDX-004", "PDD-VER-007"],
    async run(p, env) {
      await p.hello({ versions: V1_1 });
      tokenIdsOffered(p);
      const { context, maxPrompt } = contextLimits(p);
      if (maxPrompt > 8192) throw new NotOffered(`max_prompt_tokens is ${maxPrompt}; the case prefills at most 8,192`);
      const q = await reopenAsCloudModel(p, env, V1_1);
      const minor = negotiatedMinor(q);
      const room = context - maxPrompt;
      const { end, tokens, granted } = await fillContext(q, maxPrompt);
      const reason = field<string>(end, "end.reason");
      if (reason === "END_REASON_EOS") throw new NotOffered("the model ended its answer before the context was full");
      if (granted < room) throw new NotOffered(`granted ${granted} < the ${room} positions left: a budget limit`);
      const want = minor >= 1 ? "END_REASON_CONTEXT_FULL" : "END_REASON_BUDGET_EXHAUSTED";
      expectThat(
        reason === want && tokens === room && field(end, "end.tokenCount") === room,
        `End{${want}, ${room}} at version 1.${minor}: prompt + tokens = context_length ${context} (PDD-IDX-007)`,
        render(end),
      );
    },
  },
  {
    id: "cloud.tokenization",
    title: "tokenizes the spec's test texts as Appendix C says, when it serves spec/vectors/spec.gguf",
    role: "cloud",
    requirements: ["PDD-TOK-001", "PDD-REQ-001"],
    async run(p, env) {
      const t = tokenVectors();
      if (!t) throw new NotOffered("the spec's test vectors (spec/vectors/) are not installed");
      await p.hello();
      const model = field<Record<string, Uint8Array>>(p.ack!, "helloAck.cloudModel");
      if (Buffer.from(model.modelFingerprint ?? []).toString("hex") !== t.modelFingerprint)
        throw new NotOffered("the cloud does not serve spec/vectors/spec.gguf, the model of the vectors");
      // The empty text is a vector (BOS only) but not a prompt (PDD-REQ-003).
      const texts = t.vectors.filter((v) => v.text !== "");
      for (const [i, v] of texts.entries()) {
        p.send(prefill(i + 1, { text: v.text, cloudTokenBudget: 1 }));
        const accepted = await p.until((f) => requestIdOf(f) === i + 1, `Accepted for ${JSON.stringify(v.text)}`);
        expectThat(
          field(accepted, "accepted.promptTokens") === v.ids.length,
          `prompt_tokens ${v.ids.length} for ${JSON.stringify(v.text)} (PDD-TOK-001)`,
          render(accepted),
        );
        await p.collect(i + 1);
      }
      // The IDs themselves, where the cloud shows them: the header of its KV image (§7.2).
      if (field(p.ack!, "helloAck.capabilities.kvChunks") !== true) return;
      const q = await reopenAsCloudModel(p, env);
      const v = texts.reduce((a, b) => (b.ids.length > a.ids.length ? b : a));
      const kv = { format: "KV_FORMAT_LLAMA_SEQ_STATE", initialCreditBytes: String(64 << 20) };
      q.send(prefill(1, { text: v.text, cloudTokenBudget: 2, kv }));
      const frames = await q.collect(1, 20_000);
      const chunks = frames.filter((f) => f.body === "kvChunk").map((f) => field<Buffer>(f, "kvChunk.data"));
      const tokens = seqStateTokens(Buffer.concat(chunks));
      if (!tokens) throw new NotOffered("no KV image header to read the prompt's token IDs from");
      expectThat(
        JSON.stringify(tokens.slice(0, v.ids.length)) === JSON.stringify(v.ids),
        `the image's first tokens ${JSON.stringify(v.ids)} for ${JSON.stringify(v.text)} (PDD-TOK-001)`,
        JSON.stringify(tokens.slice(0, v.ids.length)),
      );
    },
  },
  {
    id: "cloud.kv.hold",
    title: "holds End for a stalled KV transfer at most 10 s after the last token, then abandons it without an error",
    role: "cloud",
    requirements: ["PDD-KV-018", "PDD-KV-017"],
    needs: ["kv"],
    async run(p, env) {
      const q = await kvSession(p, env);
      // Budget 2 at full speed: the last token comes at once, then the transfer waits for credit that never comes.
      q.send(starvedKv(q, 1, 2, 0));
      const accepted = await kvGranted(q, 1);
      const limit = Number(field(q.ack!, "helloAck.limits.maxRequestDurationMs")) || Number.POSITIVE_INFINITY;
      const shortLimit = limit < KV_HOLD_MS + KV_HOLD_SLACK_MS;
      const what = "the request's End within the KV hold limit (PDD-KV-018)";
      const { kvBytes, lastTokenAt, end } = await readToEnd(q, 1, what, shortLimit);
      const held = performance.now() - lastTokenAt;
      expectThat(
        held <= KV_HOLD_MS + KV_HOLD_SLACK_MS,
        `End at most 10 s after the last token (PDD-KV-018; ${KV_HOLD_SLACK_MS / 1000} s of slack)`,
        `${Math.round(held)} ms`,
      );
      const total = Number(field(accepted, "accepted.kvTotalBytes")) || Number.POSITIVE_INFINITY;
      const sent = Number(field(end, "end.usage.kvBytesSent"));
      expectThat(
        // Under a request-duration limit shorter than the hold, End{ERROR} after Error{TIMEOUT} (PDD-ORD-006).
        [...(shortLimit ? ["END_REASON_ERROR"] : []), "END_REASON_BUDGET_EXHAUSTED", "END_REASON_EOS"].includes(
          field<string>(end, "end.reason"),
        ) &&
          sent === kvBytes &&
          kvBytes <= KV_CHUNK &&
          sent < total,
        "the tokens' own End, kv_bytes_sent = the bytes of the one credited chunk < total_bytes: abandoned, not an error (PDD-KV-017)",
        `${kvBytes} bytes received; ${render(end)}`,
      );
      // Cancel abandons a transfer too (PDD-KV-017): no chunk after it, whatever credit comes.
      q.send(starvedKv(q, 2, 64, 50_000));
      await q.until((f) => requestIdOf(f) === 2 && f.body === "firstToken", "FirstToken of request 2");
      q.send({ cancel: { requestId: 2, code: "ERROR_CODE_CANCELLED" } });
      q.send({ kvCredit: { requestId: 2, bytes: String(1 << 20) } });
      const second = await readToEnd(q, 2, "the cancelled request's End");
      expectThat(
        Number(field(second.end, "end.usage.kvBytesSent")) === second.kvBytes && second.kvBytes <= KV_CHUNK,
        "no chunk past the credit before the Cancel: the Cancel abandoned the transfer (PDD-KV-017)",
        `${second.kvBytes} bytes received; ${render(second.end)}`,
      );
    },
  },
];
