/**
 * The catch-up on another vocabulary when its target ends inside a UTF-8
 * character and more cloud tokens have already come (issue 19): the device
 * must cover the rest of the character from what has come, not wait for a
 * token past the target, which is already there. Waiting on that spun
 * without yielding (100% CPU, no timer ever ran), so this test drives the
 * pipeline through a host that counts its waits and refuses past a bound:
 * the spin fails in a few milliseconds instead of hanging the worker.
 * (Found by the llama-server suite's tiny-b test; seam.test.ts covers the
 * takeover at a seam whose last byte never comes.)
 */
import { describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { CloudAnswer } from "./cloud-answer.js";
import { Display } from "./display.js";
import { KvReceiver } from "./kv-receiver.js";
import { LocalPipeline, type PipelineHost } from "./local-pipeline.js";
import type { RunOptions } from "./run.js";

/** The cloud's tokens, in another tokenizer than the device's: " The", " na", "ï" split in two bytes, "ve". */
const CLOUD_PIECES = [
  Buffer.from(" The"),
  Buffer.from(" na"),
  Buffer.from([0xc3]),
  Buffer.from([0xaf]),
  Buffer.from("ve"),
];

/** A display held back after 2 cloud tokens (one that paces at 10 s a token): the lead of 1 puts the target at 3, inside "ï". */
class HeldDisplay extends Display {
  override get shownCloud(): number {
    return 2;
  }
}

/** More waits than a catch-up over 5 tokens can need: past it, the pipeline is spinning. */
const MAX_WAITS = 50;

/** A host whose cloud has sent all 5 tokens of a budget of 8 and is still streaming; it records the takeover. */
function fakeHost(): { host: PipelineHost; takeovers: number[]; waits: () => number } {
  const cloud = new CloudAnswer();
  cloud.grantedBudget = 8;
  for (const [i, piece] of CLOUD_PIECES.entries()) cloud.received.push({ id: 100 + i, piece });
  const takeovers: number[] = [];
  let waits = 0;
  const host: PipelineHost = {
    cloud,
    kv: new KvReceiver(),
    display: new HeldDisplay(10_000, { cloudRemaining: () => 3, localEtaMs: () => undefined, localTpotMs: () => 0 }),
    cloudModelFingerprint: undefined,
    sameTokenizer: false,
    samePromptTokens: false,
    // Nothing more will come from this cloud: a wait is fine only when its condition already holds.
    until: async (cond) => {
      if (++waits > MAX_WAITS) throw new Error(`catch-up spun: ${waits} waits on a condition already true`);
      if (!cond()) throw new Error("the pipeline waited for a cloud token that will not come");
    },
    progress: () => undefined,
    takeover: async (k) => {
      takeovers.push(k);
    },
    abandonCloud: async () => false,
  };
  return { host, takeovers, waits: () => waits };
}

describe("catch-up on another vocabulary, target inside a character", () => {
  it("covers the rest of the character from the tokens already come, without spinning", async () => {
    const engine = new SimEngine({ profile: INSTANT });
    const slot = await engine.acquire();
    const prefilled: number[] = [];
    const prefill = slot.prefill.bind(slot);
    slot.prefill = (tokens, opts) => {
      prefilled.push(...tokens);
      return prefill(tokens, opts);
    };
    const { host, takeovers, waits } = fakeHost();
    const opts: RunOptions = { maxTokens: 8, targetTpotMs: 10_000, cloudBudget: 8, useKv: false, prefillChunk: 4 };
    const pipeline = new LocalPipeline(engine, "Begin.", opts, host);
    await pipeline.run(slot);
    await slot.release();
    expect(waits()).toBeLessThanOrEqual(MAX_WAITS);
    // k past the cut character: the context holds all of "ï" and what followed, nothing cut or doubled.
    expect(takeovers).toEqual([5]);
    expect(Buffer.from(engine.bytes(prefilled)).toString("utf8")).toBe("Begin. The naïve");
    expect(pipeline.deviceIds).toHaveLength(3);
  });
});
