/**
 * The suite passes against the reference device with MessagePack over
 * WebTransport: conformance-device.test.ts's MessagePack run over WebSocket,
 * repeated on another binding (`npm run test:matrix`, vitest.matrix.ts).
 */
import { describe, it } from "vitest";
import { expectDevicePasses } from "./test/in-process-device.js";

describe("conformance suite against the reference device", () => {
  it("passes every case listening on https://127.0.0.1:0/pdd/v1, with msgpack", async () => {
    await expectDevicePasses("https://127.0.0.1:0/pdd/v1", ["msgpack"]);
  });
});
