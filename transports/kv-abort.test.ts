/**
 * A request's KV transfer is abandoned through its send signal, not through a
 * member of MessageStream: on WebTransport, aborting the signal resets the
 * request's KV stream, and the request's later KV chunks are never sent; the
 * single-stream bindings queue KV chunks with everything else and ignore it.
 */
import { create } from "@bufbuild/protobuf";
import { beforeAll, describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema, type CloudFrame } from "../proto/index.js";
import type { CloudStream, DeviceStream, PddServer } from "./message-stream.js";
import { BINDINGS } from "./test/bindings.js";
import { createSelfSignedCertificate, type SelfSignedCertificate } from "./tls.js";

let cert: SelfSignedCertificate;
beforeAll(async () => {
  cert = await createSelfSignedCertificate();
});

const chunk = (requestId: number, offset: number) =>
  create(CloudFrameSchema, {
    body: {
      case: "kvChunk",
      value: { requestId, offset: BigInt(offset), totalBytes: 3n, data: Uint8Array.of(offset) },
    },
  });

const token = create(CloudFrameSchema, {
  body: { case: "tokenBatch", value: { requestId: 1, startIndex: 1, tokens: [{ id: 1 }] } },
});

/** A connected pair over one binding. */
async function pair(name: string): Promise<{ server: PddServer; device: DeviceStream; cloud: CloudStream }> {
  const b = BINDINGS.find((x) => x.name === name)!;
  let accepted!: (s: CloudStream) => void;
  const cloudReady = new Promise<CloudStream>((r) => (accepted = r));
  const server = await b.serve({ onConnection: accepted }, cert);
  const device = await b.connect(server.url, {}, cert);
  await device.send(create(DeviceFrameSchema, { body: { case: "ping", value: {} } }));
  return { server, device, cloud: await cloudReady };
}

/**
 * Sends chunk 0 of request 1, waits for it, aborts request 1's transfer, sends
 * chunk 1 of request 1, then request 2's whole image and a token frame.
 * Returns the KV chunks the device saw, as "request:offset".
 */
async function kvAfterAbort(name: string): Promise<string[]> {
  const { server, device, cloud } = await pair(name);
  const seen: string[] = [];
  const frames = device[Symbol.asyncIterator]();
  const next = async (): Promise<CloudFrame> => (await frames.next()).value as CloudFrame;
  const record = (f: CloudFrame) => {
    if (f.body.case === "kvChunk") seen.push(`${f.body.value.requestId}:${f.body.value.offset}`);
  };
  try {
    const transfer = new AbortController();
    await cloud.send(chunk(1, 0), { bulk: { requestId: 1, signal: transfer.signal } });
    record(await next());
    transfer.abort();
    await cloud.send(chunk(1, 1), { bulk: { requestId: 1, signal: transfer.signal } });
    await cloud.send(chunk(2, 0), { bulk: { requestId: 2, last: true } });
    await cloud.send(token);
    // Everything sent after the abort has arrived once request 2's chunk and the token have.
    let gotToken = false;
    while (!gotToken || !seen.includes("2:0")) {
      const f = await next();
      record(f);
      gotToken ||= f.body.case === "tokenBatch";
    }
    return seen;
  } finally {
    // The server closes first: @fails-components/webtransport 1.6.8's stopServer spins
    // without end when the device has just closed a session whose KV stream carried
    // several frames (seen here; the lead has the reproduction).
    await server.close(100);
    await device.close();
  }
}

describe("abandoning a request's KV transfer", () => {
  it("on WebTransport, an aborted signal resets the request's KV stream and sends none of its later chunks", async () => {
    expect(await kvAfterAbort("webtransport (proto)")).toEqual(["1:0", "2:0"]);
  });

  it("on a single-stream binding, the signal is ignored: KV chunks queue with the other frames", async () => {
    expect(await kvAfterAbort("ws (proto)")).toEqual(["1:0", "1:1", "2:0"]);
  });
});
