/**
 * Fault injection: a device that vanishes mid-stream (the cloud frees its
 * sequence), a connection cut during a KV transfer (the device recomputes and
 * the answer is still the greedy one), and a cloud restarted while the device
 * is idle (the device backs off, then reconnects).
 */
import { type AddressInfo, connect as connectTcp, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { create, fromBinary } from "@bufbuild/protobuf";
import { CloudFrameSchema, Codec, DeviceFrameSchema } from "../proto/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { until } from "../proto/test/until.js";
import { connect } from "../transports/index.js";
import { PdDevice } from "./device.js";

const model = ensureDefaultModel("tiny");
let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: model, threads: 1, sequences: 4 });
});
afterAll(() => engine.close());

/**
 * A loopback address that stays the device's cloud while the cloud behind it
 * restarts on a fresh port: with no cloud behind it, a connection is cut as
 * soon as it is made. (Rebinding the old port instead could find it taken.)
 */
async function stableAddress(): Promise<{ port: number; target: (port?: number) => void; close: () => Promise<void> }> {
  let upstream: number | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => client.destroy());
    if (upstream === undefined) return void client.destroy();
    const cloud = connectTcp(upstream, "127.0.0.1");
    sockets.add(cloud);
    cloud.on("close", () => {
      sockets.delete(cloud);
      client.destroy();
    });
    cloud.on("error", () => client.destroy());
    client.on("close", () => cloud.destroy());
    client.pipe(cloud).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    target: (port) => (upstream = port),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A WebSocket proxy to `upstream` that cuts both sides the first time the cloud sends a KvChunk. */
async function cutOnKv(upstream: string): Promise<{ url: string; cuts: () => number; close: () => Promise<void> }> {
  let cuts = 0;
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (p) => [...p][0] ?? false });
  wss.on("connection", (client, req) => {
    const server = new WebSocket(upstream, [client.protocol], {
      headers: { authorization: req.headers.authorization ?? "" },
    });
    const pending: Buffer[] = [];
    server.on("open", () => {
      for (const b of pending.splice(0)) server.send(b);
    });
    client.on("message", (b: Buffer) => (server.readyState === WebSocket.OPEN ? server.send(b) : pending.push(b)));
    server.on("message", (b: Buffer) => {
      const kv = client.protocol === "pdd.v1.proto" && fromBinary(CloudFrameSchema, b).body.case === "kvChunk";
      if (kv) {
        cuts++;
        client.terminate();
        server.terminate();
        return;
      }
      client.send(b);
    });
    client.on("close", () => server.terminate());
    server.on("close", () => client.terminate());
    client.on("error", () => server.terminate());
    server.on("error", () => client.terminate());
  });
  await new Promise((r) => wss.once("listening", r));
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/pdd`,
    cuts: () => cuts,
    close: () => new Promise((r) => wss.close(() => r())),
  };
}

describe("faults", () => {
  let cloud: CloudPeer;
  beforeAll(async () => {
    cloud = await startCloud({
      model,
      threads: 1,
      logLevel: "silent",
      listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
    });
  });
  afterAll(() => cloud.close({ drainSeconds: 0 }));

  it.each(["ws", "grpc", "webtransport"] as const)(
    "over %s, a device that vanishes mid-stream has its sequence freed",
    async (t) => {
      const s = await connect(cloud.urls[t]!, { ca: cloud.certificate.cert });
      await s.send(
        create(DeviceFrameSchema, {
          body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } },
        }),
      );
      await s.send(
        create(DeviceFrameSchema, {
          body: {
            case: "prefillRequest",
            value: {
              requestId: 1,
              prompt: { case: "text", value: "The fox." },
              cloudTokenBudget: 200,
              targetTpotUs: 200_000,
            },
          },
        }),
      );
      for await (const f of s) if (f.body.case === "firstToken") break;
      expect(cloud.engine.busy).toBe(1);
      s.abort(); // no Cancel, no Goodbye: gone
      await until(() => cloud.engine.busy === 0 && cloud.connections === 0, "the cloud to free the sequence");
    },
  );

  it("a connection cut during the KV transfer: the device recomputes and gives the greedy answer", async () => {
    const prompt = "The quick brown fox jumps over the lazy dog. ".repeat(30);
    const local = await (await PdDevice.create({ engine })).generate(prompt, {
      maxTokens: 40,
      localOnly: true,
      targetTpotMs: 0,
    });
    const proxy = await cutOnKv(cloud.urls.ws!);
    try {
      const device = await PdDevice.create({ engine, cloud: proxy.url, emulate: { prefillMsPerToken: 2 } });
      const r = await device.generate(prompt, { maxTokens: 40, targetTpotMs: 5, cloudBudget: 30 });
      await device.close();
      expect(proxy.cuts()).toBe(1);
      expect(r.kvImported).toBe(false);
      expect(r.cloudTokens).toBeGreaterThan(0); // it used the cloud's tokens before the cut
      expect(r.text).toBe(local.text);
    } finally {
      await proxy.close();
    }
  });

  it("a cloud restarted while the device is idle: the device backs off while it is down, then reconnects", async () => {
    const address = await stableAddress();
    const first = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
    address.target(Number(new URL(first.urls.ws!).port));
    const url = `ws://127.0.0.1:${address.port}/pdd`;
    const device = await PdDevice.create({ engine, cloud: url, reconnect: { initialMs: 200, maxMs: 1000 } });
    try {
      expect((await device.generate("The fox.", { maxTokens: 8, targetTpotMs: 0 })).mode).toBe("pd");
      await first.close({ drainSeconds: 0 });
      address.target(undefined);
      // Down: answers come from the device alone, and once a reconnection has failed, the device backs off.
      await until(async () => {
        expect((await device.generate("The fox.", { maxTokens: 8, targetTpotMs: 0 })).mode).not.toBe("pd");
        return device.reconnectBackoffMs > 0;
      }, "the device to back off");
      expect(device.reconnectBackoffMs).toBe(200);
      const second = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
      address.target(Number(new URL(second.urls.ws!).port));
      try {
        // Up again: once the backoff has passed, the next request goes through it.
        await until(
          async () => (await device.generate("The fox.", { maxTokens: 8, targetTpotMs: 0 })).mode === "pd",
          "a request through the restarted cloud",
        );
        expect(device.reconnectBackoffMs).toBe(0);
      } finally {
        await second.close({ drainSeconds: 0 });
      }
    } finally {
      await device.close();
      await address.close();
    }
  });
});
