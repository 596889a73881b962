/**
 * `pdd fuzz`'s liveness check fails a cloud that still answers Pings but no
 * longer serves a normal device right (issue 13): mutant clouds (the reference
 * cloud behind a proxy, test/mutants.ts) that truncate or change answers once
 * the baseline is taken, metrics that still count a sequence, and a cloud
 * that cannot answer at all before fuzzing.
 */
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { fuzzCloud, FuzzFailure, type FuzzCause } from "./fuzz.js";
import { startMutant, type Mutant } from "./test/mutants.js";

type Msg = Record<string, unknown>;
const body = (f: Msg) => (f as { body?: string }).body;
const batch = (f: Msg) => f.tokenBatch as { startIndex: number; tokens: { id: number }[] };

/** A mutant that serves the first request (the baseline) right and breaks every answer after it with `spoil`. */
function afterBaseline(name: string, spoil: (f: Msg) => Msg[]): Mutant {
  let ends = 0;
  return {
    name,
    mustFail: "pdd fuzz liveness",
    down: (f) => {
      if (body(f) === "end") ends++;
      return ends === 0 || (ends === 1 && body(f) === "end") ? [f] : spoil(f);
    },
  };
}

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startCloud({
    model: ensureDefaultModel("tiny"),
    threads: 1,
    logLevel: "silent",
    listen: { ws: "127.0.0.1:0" },
  });
});
afterAll(() => cloud.close({ drainSeconds: 0 }));

/**
 * Fuzzes `target` for 20 cases with a check every 10; the cause it fails with, or "passed". `floorMs`: a
 * check's least deadline, lowered where the cloud is meant to fail by it (a hang detector, not a speed test).
 */
async function causeOf(target: string, o: { metrics?: string; floorMs?: number } = {}): Promise<FuzzCause | "passed"> {
  try {
    await fuzzCloud({ target, codec: "proto", cases: 20, seed: 7, checkEvery: 10, ...o });
    return "passed";
  } catch (e) {
    if (e instanceof FuzzFailure) return e.why;
    throw e;
  }
}

async function throughMutant(m: Mutant): Promise<FuzzCause | "passed"> {
  const proxy = await startMutant(cloud.urls.ws!, m);
  try {
    return await causeOf(proxy.url);
  } finally {
    await proxy.close();
  }
}

/** A metrics endpoint that says `text`. */
async function fakeMetrics(text: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_q, res) => res.end(text));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/metrics`, server };
}

describe("pdd fuzz: liveness is a full, correct answer, not a Pong", () => {
  it("passes the reference cloud, and a proxy that changes nothing", async () => {
    expect(await throughMutant({ name: "honest", mustFail: "" })).toBe("passed");
  });

  it("fails a cloud that truncates answers after the baseline (End counts a token never sent)", async () => {
    const cut = afterBaseline("truncates", (f) => (body(f) === "tokenBatch" && batch(f).startIndex === 7 ? [] : [f]));
    expect(await throughMutant(cut)).toBe("wrong-answer");
  });

  it("fails a cloud that answers other tokens after the baseline", async () => {
    const wrong = afterBaseline("other tokens", (f) => {
      if (body(f) !== "tokenBatch") return [f];
      const b = batch(f);
      return [{ ...f, tokenBatch: { ...b, tokens: b.tokens.map((t) => ({ ...t, id: t.id + 1 })) } }];
    });
    expect(await throughMutant(wrong)).toBe("wrong-answer");
  });

  it("fails a cloud that stops answering after the baseline but still Pongs", async () => {
    const mute = afterBaseline("mute", (f) => (body(f) === "pong" ? [f] : []));
    const proxy = await startMutant(cloud.urls.ws!, mute);
    try {
      expect(await causeOf(proxy.url, { floorMs: 500 })).toBe("no-answer");
    } finally {
      await proxy.close();
    }
  }, 30_000);

  it("fails a cloud whose metrics still hold a sequence, or lack the gauge, and names a cloud that never answered", async () => {
    const held = await fakeMetrics("pdd_sequences_active 1\npdd_engine_sequences_busy 0\npdd_queue_depth 0\n");
    // Admission free, the engine's sequence not (mutation check: without the engine gauge this passes).
    const busy = await fakeMetrics("pdd_sequences_active 0\npdd_engine_sequences_busy 1\npdd_queue_depth 0\n");
    const lacking = await fakeMetrics("pdd_queue_depth 0\n");
    try {
      expect(await causeOf(cloud.urls.ws!, { metrics: held.url, floorMs: 500 })).toBe("held");
      expect(await causeOf(cloud.urls.ws!, { metrics: busy.url, floorMs: 500 })).toBe("held");
      expect(await causeOf(cloud.urls.ws!, { metrics: lacking.url })).toBe("held");
    } finally {
      held.server.close();
      busy.server.close();
      lacking.server.close();
    }
    const never = await startMutant(cloud.urls.ws!, {
      name: "never answers",
      mustFail: "",
      down: (f) => [f].filter((x) => body(x) !== "end"),
    });
    try {
      await expect(fuzzCloud({ target: never.url, codec: "proto", cases: 1, seed: 7, waitMs: 300 })).rejects.toThrow(
        /no full answer before any fuzzing/,
      );
    } finally {
      await never.close();
    }
  }, 30_000);
});
