/**
 * PDD-LIMIT-002 on gRPC: the first message is judged on its 5-byte length
 * prefix, before Connect buffers it (issue 13, item 5). A client that sends
 * only the prefix of a first message over 64 KiB, and none of its body, is
 * refused at once: a server that waited for the body (Connect's own limit is
 * the connection's 4 MiB) would never answer it.
 */
import { connect, type ClientHttp2Session } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIRST_FRAME_MAX_BYTES } from "../../proto/index.js";
import type { PddServer } from "../message-stream.js";
import { createGrpcServer, SESSION_PATH } from "./server.js";

let server: PddServer;
let client: ClientHttp2Session;
beforeAll(async () => {
  server = await createGrpcServer({ onConnection: () => undefined });
  client = connect(`http://127.0.0.1:${server.port}`);
  client.on("error", () => undefined);
});
afterAll(async () => {
  client.close();
  await server.close(0);
});

/** Sends a gRPC message's 5-byte prefix declaring `length` bytes, and no body; resolves with how the call ended. */
function prefixOnly(length: number): Promise<{ status?: string; reset?: number }> {
  const call = client.request({
    ":method": "POST",
    ":path": SESSION_PATH,
    "content-type": "application/grpc+proto",
    te: "trailers",
  });
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(length, 1);
  call.write(prefix); // the stream stays open: the body never comes
  return new Promise((resolve) => {
    call.on("error", () => undefined);
    call.on("response", (h) => {
      if (h["grpc-status"] !== undefined) resolve({ status: String(h["grpc-status"]) });
    });
    call.on("trailers", (t) => resolve({ status: String(t["grpc-status"]) }));
    call.on("close", () => resolve({ reset: call.rstCode }));
  });
}

describe("the gRPC binding's first message", () => {
  it("is refused RESOURCE_EXHAUSTED on its 5-byte prefix alone when it declares more than 64 KiB", async () => {
    expect(await prefixOnly(FIRST_FRAME_MAX_BYTES + 1)).toEqual({ status: "8" });
  });
});
