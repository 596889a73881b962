/**
 * grpc.health.v1 Check on the gRPC binding, asked by an unmodified
 * @grpc/grpc-js client that has no schema: SERVING for the server and the
 * P/D-Device service, NOT_SERVING while draining, NOT_FOUND for another
 * service, and no credential needed (issue 16).
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PddServer } from "../message-stream.js";
import { createGrpcServer } from "./server.js";

const Health = grpc.makeGenericClientConstructor(
  {
    Check: {
      path: "/grpc.health.v1.Health/Check",
      requestStream: false,
      responseStream: false,
      // HealthCheckRequest { string service = 1; } by hand: the client has no schema.
      requestSerialize: (service: string) =>
        service === "" ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, service.length]), Buffer.from(service)]),
      requestDeserialize: (b: Buffer) => b.toString(),
      responseSerialize: (status: number) => Buffer.from([0x08, status]),
      // HealthCheckResponse { ServingStatus status = 1; }: 0 (UNKNOWN) when absent.
      responseDeserialize: (b: Buffer) => (b[0] === 0x08 ? b[1]! : 0),
    },
  },
  "Health",
);

let server: PddServer;
let serving = true;
let client: InstanceType<typeof Health>;
beforeAll(async () => {
  server = await createGrpcServer({
    onConnection: () => undefined,
    authenticate: () => false, // the P/D session needs a credential; the health check does not
    serving: () => serving,
  });
  client = new Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await server.close(0);
});

function check(service: string): Promise<number> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      Health.service.Check!.requestSerialize,
      Health.service.Check!.responseDeserialize,
      service,
      (err: grpc.ServiceError | null, status?: number) => (err ? reject(err) : resolve(status!)),
    ),
  );
}

describe("grpc.health.v1 Check", () => {
  it.each(["", "pdd.v1.PdDeviceService"])("says SERVING (1) for %j, without a credential", async (service) => {
    expect(await check(service)).toBe(1);
  });

  it("says NOT_SERVING (2) while the server drains", async () => {
    serving = false;
    try {
      expect(await check("")).toBe(2);
    } finally {
      serving = true;
    }
  });

  it("answers NOT_FOUND for a service it does not have", async () => {
    await expect(check("no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});
