/**
 * WebTransport carries KV chunks on their own streams (PDD-WT-003) so that a
 * token frame never waits behind KV bytes. With 8 MiB of KV queued ahead of
 * it, a token frame on WebTransport overtakes most of them; on the
 * single-stream bindings it must arrive after all of them.
 */
import { create } from "@bufbuild/protobuf";
import { beforeAll, describe, expect, it } from "vitest";
import { CloudFrameSchema } from "../proto/index.js";
import type { CloudStream } from "./message-stream.js";
import { BINDINGS } from "./test/bindings.js";
import { createSelfSignedCertificate, type SelfSignedCertificate } from "./tls.js";

const MiB = 1 << 20;
let cert: SelfSignedCertificate;
beforeAll(async () => {
  cert = await createSelfSignedCertificate();
});

async function kvBytesBeforeToken(bindingName: string): Promise<number> {
  const b = BINDINGS.find((x) => x.name === bindingName)!;
  let connected!: (s: CloudStream) => void;
  const connection = new Promise<CloudStream>((r) => (connected = r));
  const server = await b.serve({ onConnection: (s) => connected(s), highWaterMark: 64 * MiB }, cert);
  try {
    const device = await b.connect(server.url, { highWaterMark: 64 * MiB }, cert);
    await device.send(
      create((await import("../proto/index.js")).DeviceFrameSchema, { body: { case: "ping", value: {} } }),
    );
    const cloud = await connection;
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      const kv = create(CloudFrameSchema, {
        body: {
          case: "kvChunk",
          value: { requestId: 1, offset: BigInt(i * MiB), totalBytes: BigInt(8 * MiB), data: new Uint8Array(MiB) },
        },
      });
      sends.push(cloud.send(kv, { bulk: { requestId: 1, last: i === 7 } }));
    }
    sends.push(
      cloud.send(
        create(CloudFrameSchema, {
          body: { case: "tokenBatch", value: { requestId: 1, startIndex: 1, tokens: [{ id: 1 }] } },
        }),
      ),
    );
    let kvBytes = 0;
    let before = -1;
    for await (const f of device) {
      if (f.body.case === "kvChunk") kvBytes += f.body.value.data.length;
      if (f.body.case === "tokenBatch") before = kvBytes;
      if (before >= 0 && kvBytes === 8 * MiB) break;
    }
    await Promise.all(sends);
    await device.close();
    return before;
  } finally {
    await server.close(100);
  }
}

describe("token frames and KV bytes on one connection", () => {
  it("on WebTransport, a token frame overtakes KV chunks queued before it", async () => {
    const before = await kvBytesBeforeToken("webtransport (proto)");
    console.log(`webtransport: ${(before / MiB).toFixed(1)} MiB of KV arrived before the token`);
    expect(before).toBeLessThan(8 * MiB);
  });

  it.each(["ws (proto)", "grpc h2c"])(
    "on %s, a token frame waits behind every KV byte queued before it",
    async (name) => {
      const before = await kvBytesBeforeToken(name);
      expect(before).toBe(8 * MiB);
    },
  );
});
