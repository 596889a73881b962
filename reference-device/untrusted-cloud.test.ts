/**
 * What a cloud sends is untrusted (issue 13 item 4, SECURITY.md "Tokens from
 * the cloud" and "KV images"): a token ID outside the device's vocabulary is
 * refused as a protocol violation before the engine sees it (PDD-MSG-013),
 * and a local-model failure on what the cloud sent (its tokens, after its KV
 * image or not) makes the device cancel the cloud, recompute and report why
 * (`fallbackCause: "local-eval"`). In every case the answer is the greedy one.
 *
 * No child process and no socket: the cloud is a script on an in-memory pair
 * (test/scripted-cloud.ts), the engine a simulated one that records every
 * token it is given and fails where the test says. Its first prefill waits
 * until the device has received everything the cloud sent (a Ping the cloud
 * answers after its script), so the cloud's tokens always arrive while the
 * device is still prefilling.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { INSTANT, SimEngine, type InferenceSlot } from "../engine/index.js";
import { greedy } from "../engine/test/greedy.js";
import { ErrorCode, KvFormat, type DeviceFrame } from "../proto/index.js";
import { DeviceRun, type RunOptions } from "./run.js";
import { scriptedCloud, type Script, type ScriptedCloud } from "./test/scripted-cloud.js";

const PROMPT = "Begin.";
const MAX_TOKENS = 12;
const BUDGET = 4;

/**
 * A simulated engine that records every token it is asked to evaluate. Its
 * first prefill waits for `ready`; the `fail` prefill call, or the `fail`
 * decoded token, throws as llama.cpp's eval does.
 */
class WatchedEngine extends SimEngine {
  readonly evaluated: number[] = [];
  private prefills = 0;
  private decoded = 0;
  /** KV images loaded. */
  imported = 0;

  constructor(
    private readonly ready: () => Promise<unknown>,
    private readonly fail: { prefillCall?: number; decodedToken?: number },
  ) {
    super({ profile: INSTANT });
  }

  override async acquire(): Promise<InferenceSlot> {
    const slot = await super.acquire();
    const prefill = slot.prefill.bind(slot);
    slot.prefill = async (tokens, opts) => {
      if (++this.prefills === 1) await this.ready();
      if (this.prefills === this.fail.prefillCall) throw new Error("Eval has failed");
      this.evaluated.push(...tokens);
      return prefill(tokens, opts);
    };
    const importState = slot.importState.bind(slot);
    slot.importState = async (...args) => {
      await importState(...args);
      this.imported++;
    };
    const generate = slot.generate.bind(slot);
    const decodedOne = () => {
      if (++this.decoded === this.fail.decodedToken) throw new Error("Eval has failed");
    };
    slot.generate = async function* (...args) {
      for await (const t of generate(...args)) {
        decodedOne();
        yield t;
      }
    };
    return slot;
  }
}

const tok = (engine: SimEngine, id: number, piece = engine.pieces[id]!) => ({ id, piece });

/** A cloud that sends what `tokens` makes of the greedy answer: the first as FirstToken, the rest in one TokenBatch. */
const sending =
  (tokens: (answer: number[], engine: SimEngine) => { id: number; piece: Uint8Array }[]) =>
  (answer: number[], engine: SimEngine): Script =>
  async ({ requestId }, send) => {
    const [first, ...rest] = tokens(answer, engine);
    await send({ case: "accepted", value: { requestId, cloudTokenBudget: BUDGET, promptTokens: PROMPT.length + 1 } });
    await send({ case: "firstToken", value: { requestId, token: first } });
    await send({ case: "tokenBatch", value: { requestId, startIndex: 1, tokens: rest } });
  };
const honest = sending((answer, engine) => answer.slice(0, BUDGET).map((id) => tok(engine, id)));

/** The honest tokens, then the prompt's KV image (as the engine exports it) in one chunk. */
const honestWithKv =
  (answer: number[], engine: SimEngine): Script =>
  async (req, send) => {
    const { requestId } = req;
    const image = engine.image(engine.tokenize(PROMPT));
    const kv = { kv: { granted: true }, kvFormat: KvFormat.LLAMA_SEQ_STATE, kvTotalBytes: BigInt(image.length) };
    const promptTokens = PROMPT.length + 1;
    await send({ case: "accepted", value: { requestId, cloudTokenBudget: BUDGET, promptTokens, ...kv } });
    const [first, ...rest] = answer.slice(0, BUDGET).map((id) => tok(engine, id));
    await send({ case: "firstToken", value: { requestId, token: first } });
    await send({ case: "tokenBatch", value: { requestId, startIndex: 1, tokens: rest } });
    const chunk = {
      requestId,
      format: KvFormat.LLAMA_SEQ_STATE,
      tokenCount: promptTokens,
      offset: 0n,
      totalBytes: BigInt(image.length),
      data: image,
      crc32: crc32(image),
      imageSha256: new Uint8Array(createHash("sha256").update(image).digest()),
    };
    await send({ case: "kvChunk", value: chunk });
  };

/** The device's answer to PROMPT with the cloud playing `script`, and its engine failing where `fail` says. */
async function answer(
  script: (answer: number[], engine: SimEngine) => Script,
  fail: { prefillCall?: number; decodedToken?: number } = {},
  kv = false,
) {
  let cloud: ScriptedCloud | undefined;
  // The first prefill starts once the device has everything the cloud sent: its tokens come mid-prefill.
  const engine = new WatchedEngine(() => cloud!.link.ping(), fail);
  const expected = await greedy(new SimEngine({ profile: INSTANT }), engine.tokenize(PROMPT), MAX_TOKENS);
  cloud = await scriptedCloud(engine, script(expected, engine), { kv });
  // With KV, a prefill chunk of 2: the prompt's first chunk, then the image once it has come.
  const opts: RunOptions = {
    maxTokens: MAX_TOKENS,
    targetTpotMs: 0,
    cloudBudget: BUDGET,
    useKv: kv,
    prefillChunk: kv ? 2 : 64,
  };
  const report = await new DeviceRun(engine, PROMPT, cloud.link, opts).run();
  await cloud.link.close();
  return { report, expected, engine, sent: stopsSent(cloud.seen) };
}

/** The device's Takeover and Cancel frames, as "takeover" and "cancel CODE". */
const stopsSent = (seen: DeviceFrame[]) =>
  seen.flatMap((f) =>
    f.body.case === "cancel"
      ? [`cancel ${ErrorCode[f.body.value.code]}`]
      : f.body.case === "takeover"
        ? ["takeover"]
        : [],
  );

const greedyText = (engine: SimEngine, ids: number[]) => Buffer.from(engine.bytes(ids)).toString("utf8");

describe("a cloud the device cannot trust", () => {
  it("a token ID outside the vocabulary is refused as a protocol violation, never evaluated, and the answer is greedy", async () => {
    // Token 1: an ID past the vocabulary, with the true token's bytes; then the true tokens 2 and 3.
    const outOfVocabulary = sending((answer, engine) =>
      answer
        .slice(0, BUDGET)
        .map((id, i) => (i === 1 ? tok(engine, engine.info.vocabSize + 1000, engine.pieces[id]) : tok(engine, id))),
    );
    const { report, expected, engine, sent } = await answer(outOfVocabulary);
    // PDD-MSG-013: Cancel with PROTOCOL_VIOLATION, the tokens before it kept, the ID never given to the engine.
    expect(sent).toEqual(["cancel PROTOCOL_VIOLATION"]);
    expect(engine.evaluated.filter((id) => id >= engine.info.vocabSize)).toEqual([]);
    expect(report.mode).toBe("fallback");
    expect(report.fallbackCause).toBe("violation");
    expect(report.fallbackReason).toMatch(/outside the vocabulary/);
    expect(report.cloudTokenIds).toEqual([expected[0]]);
    expect([...report.cloudTokenIds, ...report.deviceTokenIds]).toEqual(expected);
    expect(report.text).toBe(greedyText(engine, expected));
  });

  it("the local model failing on the cloud's tokens: the device cancels the cloud, recomputes, and reports local-eval", async () => {
    // Prefill call 1 is the prompt; call 2 the catch-up over the cloud's tokens, which fails.
    const { report, expected, engine, sent } = await answer(honest, { prefillCall: 2 });
    expect(sent).toEqual(["cancel CANCELLED"]);
    expect(report.mode).toBe("fallback");
    expect(report.fallbackCause).toBe("local-eval");
    expect(report.fallbackReason).toMatch(/Eval has failed/);
    expect([...report.cloudTokenIds, ...report.deviceTokenIds]).toEqual(expected);
    expect(report.text).toBe(greedyText(engine, expected));
  });

  it("the local model failing after it loaded the cloud's KV image: the device cancels the cloud, recomputes, and reports local-eval", async () => {
    // Prefill call 1 is the prompt's first chunk; the image replaces the rest; call 2, the catch-up, fails.
    const { report, expected, engine, sent } = await answer(honestWithKv, { prefillCall: 2 }, true);
    expect(engine.imported).toBe(1);
    expect(sent).toEqual(["cancel CANCELLED"]);
    expect(report.kvImported).toBe(false); // recomputed: the answer does not rest on the image
    expect(report.fallbackCause).toBe("local-eval");
    expect([...report.cloudTokenIds, ...report.deviceTokenIds]).toEqual(expected);
    expect(report.text).toBe(greedyText(engine, expected));
  });

  it("the local model failing while it decodes after the takeover: the device recomputes and the answer is greedy", async () => {
    const { report, expected, engine, sent } = await answer(honest, { decodedToken: 3 });
    expect(sent).toEqual(["takeover"]);
    expect(report.cloudTokens).toBeGreaterThan(0);
    // Not a fallback (the cloud's part was done), but said: mutation check, without `recovered` this fails.
    expect(report.mode).toBe("pd");
    expect(report.recovered).toMatch(/could not use the cloud's data/);
    expect([...report.cloudTokenIds, ...report.deviceTokenIds]).toEqual(expected);
    expect(report.text).toBe(greedyText(engine, expected));
  });
});
