/**
 * The server side of `npm run bench:transports`, run in a worker thread: the
 * floors (a raw `ws` echo and a raw HTTP/2 stream, each cleartext and over
 * TLS) and one PDD server per binding and security (ws and wss, gRPC h2c and
 * TLS, WebTransport, which is TLS only). On a
 * Ping, a PDD server answers with a one-token TokenBatch; on a DeviceProgress
 * whose prefilled_tokens is N, it streams N MiB of KV chunks on the bulk path
 * while it keeps answering pings.
 * @internal benchmark support
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import {
  createSecureServer as createSecureHttp2Server,
  createServer as createHttp2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
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

// Floors: raw ws and raw HTTP/2, cleartext and TLS. ws: 0x01… is echoed;
// 0x02 N asks for N MiB of 1 MiB messages. HTTP/2: a stream at /echo echoes
// what it gets; a stream at /bulk/N gets N MiB in 1 MiB writes.
function rawWs(server?: HttpsServer): WebSocketServer {
  const wss = server
    ? new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * MiB })
    : new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, maxPayload: 64 * MiB });
  wss.on("connection", (ws) => {
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
  return wss;
}

function onH2Stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.respond({ ":status": 200 });
  const path = String(headers[":path"] ?? "");
  if (path === "/echo") {
    stream.on("data", (d: Buffer) => stream.write(d));
    return;
  }
  const n = Number(path.split("/")[2] ?? 0);
  let i = 0;
  const next = () => {
    if (i++ < n) stream.write(chunk, () => next());
    else stream.end();
  };
  next();
}

const listen = (server: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }) =>
  new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as { port: number }).port)));

const cert = workerData.cert as { cert: string; key: string };
const raw = rawWs();
await new Promise((r) => raw.once("listening", r));
const tlsHttp = createHttpsServer({ cert: cert.cert, key: cert.key });
rawWs(tlsHttp);
const rawWssPort = await listen(tlsHttp);
const h2c = createHttp2Server();
h2c.on("stream", onH2Stream);
const h2cPort = await listen(h2c);
const h2s = createSecureHttp2Server({ cert: cert.cert, key: cert.key });
h2s.on("stream", onH2Stream);
const h2sPort = await listen(h2s);

const tls = { cert: cert.cert, key: cert.key };
const ws = await createWebSocketServer({ onConnection: handle });
const wss = await createWebSocketServer({ onConnection: handle, tls });
const grpc = await createGrpcServer({ onConnection: handle });
const grpcs = await createGrpcServer({ onConnection: handle, tls });
const wt = await createWebTransportServer({ onConnection: handle, tls: cert });
parentPort!.postMessage({
  rawWs: `ws://127.0.0.1:${(raw.address() as { port: number }).port}`,
  rawWss: `wss://127.0.0.1:${rawWssPort}`,
  rawH2c: `http://127.0.0.1:${h2cPort}`,
  rawH2s: `https://127.0.0.1:${h2sPort}`,
  ws: ws.url,
  wss: wss.url,
  grpc: grpc.url,
  grpcs: grpcs.url,
  wt: wt.url,
});
