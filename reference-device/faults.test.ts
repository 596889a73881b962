/**
 * Fault injection: a device that vanishes mid-stream (the cloud frees its
 * sequence), a connection cut during a KV transfer (the device recomputes and
 * the answer is still the greedy one), and a cloud restarted while the device
 * is idle (the device backs off, then reconnects).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { Engine, ensureDefaultModel } from "../engine/index.js";
import { create, fromBinary } from "@bufbuild/protobuf";
import { CloudFrameSchema, Codec, DeviceFrameSchema } from "../proto/index.js";
import { startCloud, type CloudPeer } from "../reference-cloud/index.js";
import { connect } from "../transports/index.js";
import { PdDevice } from "./device.js";

const model = ensureDefaultModel("tiny");
let engine: Engine;
beforeAll(async () => {
  engine = await Engine.load({ modelPath: model, threads: 1, sequences: 4 });
});
afterAll(() => engine.close());

const until = async (cond: () => boolean, ms = 10_000) => {
  const t0 = performance.now();
  while (!cond() && performance.now() - t0 < ms) await new Promise((r) => setTimeout(r, 5));
  return cond();
};

/** A WebSocket proxy to `upstream` that cuts both sides the first time the cloud sends a KvChunk. */
async function cutOnKv(upstream: string): Promise<{ url: string; cuts: () => number; close: () => Promise<void> }> {
  let cuts = 0;
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (p) => [...p][0] ?? false });
  wss.on("connection", (client, req) => {
    const server = new WebSocket(upstream, [client.protocol], {
      headers: { authorization: req.headers.authorization ?? "" },
    });
    const pending: Buffer[] = [];
    server.on("open", () => pending.splice(0).forEach((b) => server.send(b)));
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
      expect(await until(() => cloud.engine.busy === 0 && cloud.connections === 0)).toBe(true);
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
    const first = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } });
    const url = first.urls.ws!;
    const port = Number(new URL(url).port);
    const device = await PdDevice.create({ engine, cloud: url, reconnect: { initialMs: 200, maxMs: 1000 } });
    try {
      expect((await device.generate("The fox.", { maxTokens: 8, targetTpotMs: 0 })).mode).toBe("pd");
      await first.close({ drainSeconds: 0 });
      // Down: answers come from the device alone, and the device backs off.
      expect((await device.generate("The fox.", { maxTokens: 8, targetTpotMs: 0 })).mode).not.toBe("pd");
      await until(() => device.reconnectBackoffMs > 0, 2000);
      expect(device.reconnectBackoffMs).toBe(200);
      const second = await startCloud({ model, threads: 1, logLevel: "silent", listen: { ws: `127.0.0.1:${port}` } });
      try {
        // Up again: once the backoff has passed, the next request goes through it.
        let mode = "local";
        for (let i = 0; i < 40 && mode !== "pd"; i++) {
          await new Promise((r) => setTimeout(r, 100));
          mode = (await device.generate("The fox.", { maxTokens: 8, targetTpotMs: 0 })).mode;
        }
        expect(mode).toBe("pd");
        expect(device.reconnectBackoffMs).toBe(0);
      } finally {
        await second.close({ drainSeconds: 0 });
      }
    } finally {
      await device.close();
    }
  });
});
