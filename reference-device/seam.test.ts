/**
 * A takeover at a cross-tokenizer seam while cloud tokens still wait to be
 * shown (issue 15's audit): the cloud's budget ends inside a character, so
 * the device's context stops at the character before it, k is there, and the
 * cut character's first byte, still in the display queue, must go with every
 * other cloud token at or past k (PDD-TAKEOVER-003). A display that keeps
 * pace with the cloud (pd.test.ts's seam test) never has a queue to drop
 * from, so this test holds the display back with fake timers.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it, vi } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import type { InferenceSlot } from "../engine/index.js";
import { CloudFrameSchema, Codec, EndReason, type CloudFrame } from "../proto/index.js";
import { createWebSocketServer, type CloudStream, type PddServer } from "../transports/index.js";
import { PdDevice } from "./device.js";

/** The cloud's tokens: " The", " na" and the first byte of "ï", in another tokenizer than the device's. */
const CLOUD_PIECES = [Buffer.from(" The"), Buffer.from(" na"), Buffer.from([0xc3])];

const cloudFrame = (body: MessageInitShape<typeof CloudFrameSchema>["body"]) => create(CloudFrameSchema, { body });

/**
 * A cloud that answers one request with the 3 pieces and End (its budget spent inside "ï"),
 * and answers a Ping only after that End: the Pong tells the test the device has the whole answer.
 */
function scriptedCloud(stream: CloudStream): void {
  let ended = false;
  let pongLater: CloudFrame | undefined;
  void (async () => {
    for await (const f of stream) {
      const b = f.body;
      if (b.case === "hello") await stream.send(cloudFrame({ case: "helloAck", value: helloAck() }));
      if (b.case === "ping") {
        const pong = cloudFrame({ case: "pong", value: { nonce: b.value.nonce, pingSentAtUs: b.value.sentAtUs } });
        if (ended) await stream.send(pong);
        else pongLater = pong;
      }
      if (b.case !== "prefillRequest") continue;
      const requestId = b.value.requestId;
      await stream.send(cloudFrame({ case: "accepted", value: { requestId, cloudTokenBudget: 3, promptTokens: 7 } }));
      const [t0, ...rest] = CLOUD_PIECES.map((piece, i) => ({ id: 100 + i, piece }));
      await stream.send(cloudFrame({ case: "firstToken", value: { requestId, token: t0 } }));
      await stream.send(cloudFrame({ case: "tokenBatch", value: { requestId, startIndex: 1, tokens: rest } }));
      await stream.send(
        cloudFrame({ case: "end", value: { requestId, reason: EndReason.BUDGET_EXHAUSTED, tokenCount: 3 } }),
      );
      ended = true;
      if (pongLater) await stream.send(pongLater);
    }
  })().catch(() => undefined);
}

const other = (c: string) => new Uint8Array(32).fill(c.charCodeAt(0));
const helloAck = () => ({
  version: { major: 1, minor: 0 },
  codec: Codec.PROTO,
  limits: { maxFrameBytes: 4 << 20, maxPromptTokens: 4096, maxConcurrentRequests: 4, maxCloudTokenBudget: 64 },
  // Another model with another tokenizer: the device re-tokenizes the cloud's text (PDD-MSG-009).
  cloudModel: { name: "other", modelFingerprint: other("m"), tokenizerFingerprint: other("t"), vocabSize: 9 },
  capabilities: { kvChunks: false, refinement: false },
});

/** A simulated engine that says when the device starts decoding its own tokens: after its takeover. */
class DecodeWatch extends SimEngine {
  decoding = false;
  override async acquire(): Promise<InferenceSlot> {
    const slot = await super.acquire();
    const generate = slot.generate.bind(slot);
    slot.generate = (...a) => {
      this.decoding = true;
      return generate(...a);
    };
    return slot;
  }
}

/** One real turn of the event loop: the simulated engine works in setImmediate steps, which stay real. */
const turn = () => new Promise<void>((r) => setImmediate(r));

let server: PddServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close(0);
});

describe("takeover at a cross-tokenizer seam", () => {
  it("drops the cut character's first byte from the display queue: no broken character, nothing doubled", async () => {
    server = await createWebSocketServer({ host: "127.0.0.1", port: 0, onConnection: scriptedCloud });
    // Only setTimeout: it paces the display (10 s a token) and the emulated prefill (1 ms a token).
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const engine = new DecodeWatch({ profile: INSTANT });
    const device = await PdDevice.create({
      engine,
      cloud: server.url,
      useKv: false,
      prefillChunk: 4,
      emulate: { prefillMsPerToken: 1 },
    });
    let report: Awaited<ReturnType<PdDevice["generate"]>> | undefined;
    const run = device.generate("Begin.", { maxTokens: 8, cloudBudget: 3, targetTpotMs: 10_000 }).then((r) => {
      report = r;
    });
    // The Pong follows the cloud's End: the device has all 3 tokens, has shown " The", and still prefills.
    await device.rtt();
    // The prefill's millisecond steps, far short of the display's next token at 10 s, until it decodes.
    while (!engine.decoding) {
      await vi.advanceTimersByTimeAsync(1);
      await turn();
    }
    while (!report) {
      await vi.advanceTimersByTimeAsync(10_000);
      await turn();
    }
    await run;
    vi.useRealTimers();
    await device.close();
    const own = Buffer.from(engine.bytes(report.deviceTokenIds)).toString("utf8");
    expect(report.takeoverIndex).toBe(2);
    expect(report.text).toBe(` The na${own}`);
    expect(report.text).not.toContain("\uFFFD");
  });
});
