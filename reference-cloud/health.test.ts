/**
 * The cloud's grpc.health.v1 while it drains (issue 16): a load balancer
 * watching it sees NOT_SERVING as soon as the drain begins, while a request
 * is still being answered and the gRPC port still takes calls, and the Watch
 * call ends when the cloud has stopped.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { Codec, DeviceFrameSchema, type CloudFrame } from "../proto/index.js";
import { connect, type DeviceStream } from "../transports/index.js";
import { startCloud, type CloudPeer } from "./index.js";

/** HealthCheckRequest for the server as a whole (no field set), and HealthCheckResponse's status. */
const request = () => Buffer.alloc(0);
const status = (b: Buffer) => (b[0] === 0x08 ? b[1]! : 0);
const [SERVING, NOT_SERVING] = [1, 2];

let cloud: CloudPeer;
let client: grpc.Client;
beforeAll(async () => {
  cloud = await startCloud({ listen: { grpc: "127.0.0.1:0" } }, { engine: new SimEngine({ profile: INSTANT }) });
  client = new grpc.Client(new URL(cloud.urls.grpc!).host, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await cloud.close({ drainSeconds: 0 });
});

/** A device with a long answer in flight (256 tokens paced at 2 a second): the drain waits for it. */
async function requestInFlight(): Promise<DeviceStream> {
  const s = await connect(cloud.urls.grpc!);
  const frame = (body: Parameters<typeof create<typeof DeviceFrameSchema>>[1]) =>
    s.send(create(DeviceFrameSchema, body));
  await frame({ body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } } });
  await frame({
    body: {
      case: "prefillRequest",
      value: {
        requestId: 1,
        prompt: { case: "text", value: "The fox." },
        cloudTokenBudget: 256,
        maxTokens: 256,
        targetTpotUs: 500_000,
      },
    },
  });
  for await (const f of s as AsyncIterable<CloudFrame>) if (f.body.case === "firstToken") break;
  return s;
}

function check(): Promise<number> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest("/grpc.health.v1.Health/Check", request, status, "", (err, s?: number) =>
      err ? reject(err) : resolve(s!),
    ),
  );
}

describe("grpc.health.v1 on a draining cloud", () => {
  it("Watch sees NOT_SERVING when the drain begins, with a request still running, and ends when the cloud stops", async () => {
    const device = await requestInFlight();
    const call = client.makeServerStreamRequest("/grpc.health.v1.Health/Watch", request, status, "");
    const seen: number[] = [];
    const next = () => new Promise<number>((resolve) => call.once("data", resolve));
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.on("data", (s: number) => seen.push(s));
    call.on("error", () => undefined);
    expect(await next()).toBe(SERVING);

    const stopped = cloud.close({ drainSeconds: 30 });
    expect(await next()).toBe(NOT_SERVING);
    // The drain is still waiting for the device's request: the port answers, and says NOT_SERVING.
    expect(cloud.connections).toBe(1);
    expect(await check()).toBe(NOT_SERVING);

    await device.close();
    await stopped;
    expect((await ended).code).toBe(grpc.status.OK);
    expect(seen).toEqual([SERVING, NOT_SERVING]);
  });
});
