/**
 * The server side of `npm run bench:transports`, run in a worker thread: a
 * raw `ws` echo server (the baseline) and one PDD server per binding. On a
 * Ping, a PDD server answers with a one-token TokenBatch; on a DeviceProgress
 * whose prefilled_tokens is N, it streams N MiB of KV chunks on the bulk path
 * while it keeps answering pings.
 * @internal benchmark support
 */
import { parentPort, workerData } from "node:worker_threads";
import { create } from "@bufbuild/protobuf";
import { WebSocketServer } from "ws";
import { CloudFrameSchema } from "../../proto/index.js";
import { createGrpcServer, createWebSocketServer, createWebTransportServer, type CloudStream } from "../index.js";

const MiB = 1 << 20;
const chunk = new Uint8Array(MiB).fill(7);
const token = create(CloudFrameSchema, {
  body: {
    case: "tokenBatch",
    value: { requestId: 1, startIndex: 1, tokens: [{ id: 42, piece: new Uint8Array([0x20, 0x61]) }] },
  },
});

function handle(stream: CloudStream): void {
  void (async () => {
    try {
      for await (const f of stream) {
        if (f.body.case === "ping") stream.send(token).catch(() => undefined); // the client left: nothing to answer
        if (f.body.case === "progress") {
          const n = f.body.value.prefilledTokens;
          void (async () => {
            for (let i = 0; i < n; i++) {
              const kv = create(CloudFrameSchema, {
                body: {
                  case: "kvChunk",
                  value: { requestId: 1, offset: BigInt(i * MiB), totalBytes: BigInt(n * MiB), data: chunk },
                },
              });
              await stream.send(kv, { bulk: { requestId: 1, last: i === n - 1 } });
            }
          })().catch(() => undefined); // the client left mid-transfer: the rest is not wanted
        }
      }
    } catch {
      // connection ended
    }
  })(); // never rejects: the loop catches
}

// Baseline: raw ws. 0x01… is echoed; 0x02 N asks for N MiB of 1 MiB messages.
const raw = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, maxPayload: 64 * MiB });
raw.on("connection", (ws) => {
  ws.on("message", (data: Buffer) => {
    if (data[0] === 1) ws.send(data);
    if (data[0] === 2) {
      const n = data[1]!;
      let i = 0;
      const next = () => {
        if (i++ < n) ws.send(chunk, () => next());
      };
      next();
    }
  });
});
await new Promise((r) => raw.once("listening", r));

const cert = workerData.cert as { cert: string; key: string };
const ws = await createWebSocketServer({ onConnection: handle });
const grpc = await createGrpcServer({ onConnection: handle });
const wt = await createWebTransportServer({ onConnection: handle, tls: cert });
parentPort!.postMessage({
  raw: `ws://127.0.0.1:${(raw.address() as { port: number }).port}`,
  ws: ws.url,
  grpc: grpc.url,
  wt: wt.url,
});
