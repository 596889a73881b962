/**
 * The suite passes against the reference cloud on every binding, and on
 * every codec over WebSocket. The bindings run at once, each against its own
 * cloud: cases that fill a cloud to its capacity must not see another
 * binding's requests. MessagePack over WebTransport repeats MessagePack over
 * WebSocket on another binding: conformance-cloud-bindings.test.ts (`npm run
 * test:matrix`). The device role is conformance-device.test.ts, the broken
 * clouds conformance-mutants.test.ts.
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { expectEveryCasePasses, startConformanceCloud } from "./test/reference-cloud.js";

const RUNS = [
  ["ws", ["proto", "msgpack"]],
  ["grpc", ["proto"]],
  ["webtransport", ["proto"]],
] as const;
const clouds = new Map<(typeof RUNS)[number][0], CloudPeer>();
beforeAll(async () => {
  await Promise.all(RUNS.map(async ([b]) => clouds.set(b, await startConformanceCloud({ [b]: "127.0.0.1:0" }))));
});
afterAll(async () => {
  await Promise.all([...clouds.values()].map((c) => c.close({ drainSeconds: 0 })));
});

describe.concurrent("conformance suite against the reference cloud", () => {
  it.each(RUNS)("passes every case over %s, with the codecs %j", async (key, codecs) => {
    await expectEveryCasePasses(clouds.get(key)!, key, [...codecs]);
  });
});
