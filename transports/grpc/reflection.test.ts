/**
 * gRPC server reflection, asked as grpcurl asks it: an unmodified
 * @grpc/grpc-js client whose reflection messages are protobufjs types parsed
 * from the published definition written out below (not from this project's
 * copy), over v1 and v1alpha. It lists the services, fetches the file that
 * declares the P/D-Device service, and decodes it with protobufjs's
 * descriptor support into a schema it can use (issue 16).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import * as descriptor from "protobufjs/ext/descriptor.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PddServer } from "../message-stream.js";
import { createGrpcServer } from "./server.js";

/** grpc/reflection/v1/reflection.proto's messages, field numbers as published by the gRPC authors. */
const SCHEMA = `syntax = "proto3";
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3; string file_containing_symbol = 4; ExtensionRequest file_containing_extension = 5;
    string all_extension_numbers_of_type = 6; string list_services = 7;
  }
}
message ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4; ExtensionNumberResponse all_extension_numbers_response = 5;
    ListServiceResponse list_services_response = 6; ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ExtensionNumberResponse { string base_type_name = 1; repeated int32 extension_number = 2; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }`;
const root = protobuf.parse(SCHEMA, { keepCase: true }).root;
const Request = root.lookupType("ServerReflectionRequest");
const Response = root.lookupType("ServerReflectionResponse");

type Answer = {
  valid_host?: string;
  original_request?: Record<string, unknown>;
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  list_services_response?: { service: { name: string }[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  error_response?: { error_code: number; error_message: string };
};

let open: PddServer;
let keyed: PddServer;
beforeAll(async () => {
  open = await createGrpcServer({ onConnection: () => undefined });
  // As the cloud's hook: a session without a transport token may still bring one in its Hello.
  keyed = await createGrpcServer({
    onConnection: () => undefined,
    authenticate: (t) => t === undefined || t === "secret-key",
  });
});
afterAll(async () => {
  await open.close(0);
  await keyed.close(0);
});

/** Sends each request on one reflection stream and collects the answers, as grpcurl does. */
async function reflect(
  server: PddServer,
  requests: Record<string, unknown>[],
  opts: { version?: "v1" | "v1alpha"; token?: string } = {},
): Promise<Answer[]> {
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (opts.token) md.set("authorization", `Bearer ${opts.token}`);
  const call = client.makeBidiStreamRequest(
    `/grpc.reflection.${opts.version ?? "v1"}.ServerReflection/ServerReflectionInfo`,
    (r: Record<string, unknown>) => Buffer.from(Request.encode(Request.fromObject(r)).finish()),
    (b: Buffer) => Response.toObject(Response.decode(b), { defaults: false, arrays: true }) as Answer,
    md,
  );
  const answers: Answer[] = [];
  try {
    return await new Promise<Answer[]>((resolve, reject) => {
      call.on("data", (a: Answer) => {
        answers.push(a);
        if (answers.length === requests.length) call.end();
      });
      call.on("error", reject);
      call.on("end", () => resolve(answers));
      for (const r of requests) call.write(r);
    });
  } finally {
    client.close();
  }
}

/** The schema a FileDescriptorResponse describes, as protobufjs builds it. */
function schemaOf(a: Answer): protobuf.Root {
  // A FileDescriptorSet is its files as field 1, one after another.
  const set = protobuf.Writer.create();
  for (const file of a.file_descriptor_response!.file_descriptor_proto) set.uint32((1 << 3) | 2).bytes(file);
  return protobuf.Root.fromDescriptor(set.finish());
}

describe.each(["v1", "v1alpha"] as const)("grpc.reflection.%s.ServerReflection", (version) => {
  it("lists the P/D-Device, health and reflection services", async () => {
    const [a] = await reflect(open, [{ host: "h", list_services: "*" }], { version });
    expect(a!.valid_host).toBe("h");
    expect(a!.list_services_response!.service.map((s) => s.name)).toEqual([
      "pdd.v1.PdDeviceService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  it("gives the file that declares the P/D-Device service, which decodes into its schema", async () => {
    const [a] = await reflect(open, [{ file_containing_symbol: "pdd.v1.PdDeviceService" }], { version });
    expect(a!.original_request).toMatchObject({ file_containing_symbol: "pdd.v1.PdDeviceService" });
    const schema = schemaOf(a!);
    const session = schema.lookupService("pdd.v1.PdDeviceService").methods.Session!;
    expect(session.requestStream && session.responseStream).toBe(true);
    expect(session.resolvedRequestType?.fullName).toBe(".pdd.v1.DeviceFrame");
    // A frame written with the fetched schema reads back: the descriptor is the whole message set.
    const Frame = schema.lookupType("pdd.v1.DeviceFrame");
    const hello = { hello: { clientName: "x", versions: [{ major: 1, minor: 1 }] } };
    expect(Frame.toObject(Frame.decode(Frame.encode(Frame.fromObject(hello)).finish()))).toMatchObject(hello);
  });
});

describe("server reflection answers every request grpcurl and buf curl make", () => {
  it("finds a file by name, by method, by message and by field; answers NOT_FOUND for what it lacks", async () => {
    const answers = await reflect(open, [
      { file_by_filename: "pdd/v1/pdd.proto" },
      { file_containing_symbol: "pdd.v1.PdDeviceService.Session" },
      { file_containing_symbol: "pdd.v1.HelloAck" },
      { file_containing_symbol: "pdd.v1.Hello.client_name" },
      { file_containing_symbol: "grpc.health.v1.Health" },
      { file_containing_symbol: "no.such.Symbol" },
      { file_by_filename: "no/such.proto" },
      { all_extension_numbers_of_type: "pdd.v1.Hello" },
      { file_containing_extension: { containing_type: "pdd.v1.Hello", extension_number: 100 } },
      {},
    ]);
    const names = answers
      .slice(0, 5)
      .map((a) => schemaOf(a).files.length && descriptorName(a.file_descriptor_response!.file_descriptor_proto[0]!));
    expect(names).toEqual([
      "pdd/v1/pdd.proto",
      "pdd/v1/pdd.proto",
      "pdd/v1/pdd.proto",
      "pdd/v1/pdd.proto",
      "grpc/health/v1/health.proto",
    ]);
    expect(answers.slice(5, 7).map((a) => a.error_response?.error_code)).toEqual([5, 5]);
    expect(answers[7]!.all_extension_numbers_response).toMatchObject({ base_type_name: "pdd.v1.Hello" });
    expect(answers[8]!.error_response?.error_code).toBe(5);
    expect(answers[9]!.error_response?.error_code).toBe(3); // no request: INVALID_ARGUMENT
  });
});

function descriptorName(bytes: Uint8Array): string {
  return String(descriptor.FileDescriptorProto.decode(bytes).name);
}

describe("who may ask", () => {
  it("with an API key set, reflection needs the key, as a session does; health does not", async () => {
    await expect(reflect(keyed, [{ list_services: "" }])).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    await expect(reflect(keyed, [{ list_services: "" }], { token: "wrong" })).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
    });
    const [a] = await reflect(keyed, [{ list_services: "" }], { token: "secret-key" });
    expect(a!.list_services_response!.service).toHaveLength(4);
  });
});

describe("buf curl, a third-party client that knows only what reflection tells it", () => {
  const buf = join(import.meta.dirname, "../../node_modules/.bin/buf");
  const curl = async (...args: string[]) =>
    (await promisify(execFile)(buf, ["curl", "--http2-prior-knowledge", ...args], { timeout: 60_000 })).stdout;

  it.each(["grpc", "connect"])("lists the methods and calls Health/Check over %s", async (protocol) => {
    const url = `http://127.0.0.1:${open.port}`;
    expect((await curl("--protocol", protocol, "--list-methods", url)).split("\n")).toContain(
      "pdd.v1.PdDeviceService/Session",
    );
    const body = JSON.stringify({ service: "pdd.v1.PdDeviceService" });
    expect(JSON.parse(await curl("--protocol", protocol, "-d", body, `${url}/grpc.health.v1.Health/Check`))).toEqual({
      status: "SERVING",
    });
  });

  it("asks v1alpha when told to, and passes the key only when given one for reflection", async () => {
    const url = `http://127.0.0.1:${keyed.port}`;
    const list = (...more: string[]) => curl("--reflect-protocol", "grpc-v1alpha", ...more, "--list-services", url);
    // buf curl sends -H headers with the call, not with reflection: without --reflect-header it has no key.
    await expect(list("-H", "authorization: Bearer secret-key")).rejects.toThrow(/not authenticated/);
    const services = await list("--reflect-header", "authorization: Bearer secret-key");
    expect(services.split("\n")).toContain("pdd.v1.PdDeviceService");
  });
});
