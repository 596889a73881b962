/**
 * The suite passes against the reference cloud with MessagePack over
 * WebTransport: conformance-cloud.test.ts's MessagePack run over WebSocket,
 * repeated on another binding (`npm run test:matrix`, vitest.matrix.ts).
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import type { CloudPeer } from "../reference-cloud/index.js";
import { expectEveryCasePasses, startConformanceCloud } from "./test/reference-cloud.js";

let cloud: CloudPeer;
beforeAll(async () => {
  cloud = await startConformanceCloud({ webtransport: "127.0.0.1:0" });
});
afterAll(async () => {
  await cloud.close({ drainSeconds: 0 });
});

describe("conformance suite against the reference cloud", () => {
  it("passes every case over webtransport with msgpack", async () => {
    await expectEveryCasePasses(cloud, "webtransport", ["msgpack"]);
  });
});
