/**
 * Pins what the cloud's 64 KiB Hello limit relies on inside ws (message-limit.ts):
 * a receiver holds messages to the `_maxPayload` it keeps, and raising that
 * field lets bigger ones through. A ws upgrade that moves it fails here.
 */
import { describe, expect, it } from "vitest";
import * as ws from "ws";
import { assertWsMessageLimitWorks, messageLimitOf, raiseMessageLimit } from "./message-limit.js";

type Receiver = NodeJS.WritableStream & {
  on(event: "message", f: (data: Buffer, isBinary: boolean) => void): Receiver;
  on(event: "error", f: (e: Error & { code?: string }) => void): Receiver;
};

/** A client-side ws receiver (unmasked frames) built with `maxPayload`. */
function receiver(maxPayload: number): Receiver {
  const R = Reflect.get(ws, "Receiver") as new (o: { maxPayload: number }) => Receiver;
  return new R({ maxPayload });
}

/** One unmasked binary frame (FIN, opcode 2) of `n` < 126 bytes. */
const frame = (n: number) => Buffer.concat([Buffer.from([0x82, n]), Buffer.alloc(n, 7)]);

function outcome(r: Receiver, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    r.on("message", (data) => resolve(`message of ${data.length} bytes`));
    r.on("error", (e) => resolve(e.code ?? e.message));
    r.write(bytes);
  });
}

describe("ws's message limit, as the Hello limit uses it", () => {
  it("refuses a message over the limit the receiver was built with, on its header", async () => {
    const r = receiver(10);
    expect(messageLimitOf(r)).toBe(10);
    expect(await outcome(r, frame(20).subarray(0, 2))).toBe("WS_ERR_UNSUPPORTED_MESSAGE_LENGTH");
  });

  it("lets it through once the limit is raised", async () => {
    const r = receiver(10);
    raiseMessageLimit(r, 100);
    expect(messageLimitOf(r)).toBe(100);
    expect(await outcome(r, frame(20))).toBe("message of 20 bytes");
  });

  it("is checked at server start, and passes with the ws this package pins", () => {
    expect(() => assertWsMessageLimitWorks()).not.toThrow();
  });
});
