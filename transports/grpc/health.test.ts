/**
 * grpc.health.v1 on the gRPC binding, asked by an unmodified @grpc/grpc-js
 * client that has no schema (the two messages are encoded here by hand):
 * Check says SERVING for the server and the P/D-Device service, NOT_SERVING
 * while draining, NOT_FOUND for another service, and needs no credential;
 * Watch streams SERVING, then each change, then NOT_SERVING and its end when
 * the server closes (issue 16).
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PddServer, servingState } from "../message-stream.js";
import { createGrpcServer } from "./server.js";

/** HealthCheckRequest { string service = 1; } */
const request = (service: string) =>
  service === "" ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, service.length]), Buffer.from(service)]);
/** HealthCheckResponse { ServingStatus status = 1; }: 0 (UNKNOWN) when absent. */
const status = (b: Buffer) => (b[0] === 0x08 ? b[1]! : 0);
const [SERVING, NOT_SERVING, SERVICE_UNKNOWN] = [1, 2, 3];

let server: PddServer;
const state = servingState(true);
let client: grpc.Client;
beforeAll(async () => {
  server = await createGrpcServer({
    onConnection: () => undefined,
    authenticate: () => false, // the P/D session needs a credential; health does not
    serving: state,
  });
  client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await server.close(0);
});

function check(service: string): Promise<number> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      request,
      status,
      service,
      (err: grpc.ServiceError | null, s?: number) => (err ? reject(err) : resolve(s!)),
    ),
  );
}

/** A Watch call: the statuses as they come, each awaited in turn, and the call's end. */
function watch(service: string, on: grpc.Client = client) {
  const call = on.makeServerStreamRequest("/grpc.health.v1.Health/Watch", request, status, service);
  const seen: number[] = [];
  const waiters: (() => void)[] = [];
  call.on("data", (s: number) => {
    seen.push(s);
    for (const w of waiters.splice(0)) w();
  });
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("error", () => undefined);
  let taken = 0;
  const next = async (): Promise<number> => {
    while (seen.length <= taken) await new Promise<void>((r) => waiters.push(r));
    return seen[taken++]!;
  };
  return { next, ended, cancel: () => call.cancel() };
}

describe("grpc.health.v1 Check", () => {
  it.each(["", "pdd.v1.PdDeviceService"])("says SERVING (1) for %j, without a credential", async (service) => {
    expect(await check(service)).toBe(SERVING);
  });

  it("says NOT_SERVING (2) while the server drains", async () => {
    state.set(false);
    try {
      expect(await check("")).toBe(NOT_SERVING);
    } finally {
      state.set(true);
    }
  });

  it("answers NOT_FOUND for a service it does not have", async () => {
    await expect(check("no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});

describe("grpc.health.v1 Watch", () => {
  it("streams SERVING, then each change of the serving state", async () => {
    const w = watch("pdd.v1.PdDeviceService");
    expect(await w.next()).toBe(SERVING);
    state.set(false);
    expect(await w.next()).toBe(NOT_SERVING);
    state.set(true);
    expect(await w.next()).toBe(SERVING);
    w.cancel();
    expect((await w.ended).code).toBe(grpc.status.CANCELLED);
  });

  it("says SERVICE_UNKNOWN (3) for a service it does not have, and keeps the call open", async () => {
    const w = watch("no.such.Service");
    expect(await w.next()).toBe(SERVICE_UNKNOWN);
    w.cancel();
    await w.ended;
  });

  it("says NOT_SERVING when the server closes, then ends the call with OK", async () => {
    const own = await createGrpcServer({ onConnection: () => undefined, serving: servingState(true) });
    const c = new grpc.Client(`127.0.0.1:${own.port}`, grpc.credentials.createInsecure());
    try {
      const w = watch("", c);
      expect(await w.next()).toBe(SERVING);
      const closing = own.close(5_000);
      expect(await w.next()).toBe(NOT_SERVING);
      expect((await w.ended).code).toBe(grpc.status.OK);
      await closing;
    } finally {
      c.close();
    }
  });
});
