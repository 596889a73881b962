/**
 * Against a correct cloud whose model has a 128-token context, the suite
 * gives no false FAIL (issue 15): every case sizes its prompt to the limits
 * HelloAck announces, or says "not offered" and why. A case that sends a
 * fixed prompt is refused with PROMPT_TOO_LONG here and shows up.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import type { CloudPeer } from "../reference-cloud/index.js";
import { runConformance } from "./runner.js";
import { KEY, problems, startConformanceCloud } from "./test/reference-cloud.js";

const MODEL = ensureDefaultModel("tiny-ctx128");
let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ ws: "127.0.0.1:0" }, MODEL);
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("conformance suite against a cloud with a 128-token context", () => {
  it("passes every case that fits and says why the others are not offered", async () => {
    expect(cloud.engine.contextSize).toBe(128);
    const results = await runConformance({
      role: "cloud",
      target: cloud.urls.ws!,
      token: KEY,
      codecs: ["proto"],
      modelFile: MODEL,
    });
    // As against the 4096-token model (conformance-cloud.test.ts): no end-of-generation, an idle
    // timeout longer than the cases that need it wait, and not the model of spec/vectors.
    expect(
      problems(results, [
        "cloud.eos",
        "cloud.idle",
        "cloud.crossed-goodbye",
        "cloud.tokenization",
        "cloud.text.untokenizable",
      ]),
    ).toEqual([]);
    expect(results.filter((r) => r.status === "not-offered" && !r.details)).toEqual([]);
  });
});
