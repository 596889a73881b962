/**
 * The gRPC binding works with an unmodified third-party client: @grpc/grpc-js
 * with the schema loaded at run time by @grpc/proto-loader (protobufjs), and
 * none of this project's generated code on the client side.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudFrameSchema, PROTO_FILE } from "../../proto/index.js";
import type { CloudStream, PddServer } from "../message-stream.js";
import { createSelfSignedCertificate, type SelfSignedCertificate } from "../tls.js";
import { createGrpcServer } from "./server.js";

type Frame = Record<string, unknown>;

function echoPongs(stream: CloudStream): void {
  void (async () => {
    try {
      for await (const f of stream) {
        if (f.body.case === "ping") {
          await stream.send(
            create(CloudFrameSchema, {
              body: { case: "pong", value: { nonce: f.body.value.nonce, pingSentAtUs: f.body.value.sentAtUs } },
            }),
          );
        }
        if (f.body.case === "goodbye") await stream.close();
      }
    } catch {
      await stream.close(1, "bad frame");
    }
  })();
}

function loadClientConstructor() {
  const def = protoLoader.loadSync(PROTO_FILE, {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    pdd: { v1: { PdDeviceService: grpc.ServiceClientConstructor } };
  };
  return pkg.pdd.v1.PdDeviceService;
}

describe("an unmodified @grpc/grpc-js client", () => {
  let cert: SelfSignedCertificate;
  let h2c: PddServer;
  let tls: PddServer;
  beforeAll(async () => {
    cert = await createSelfSignedCertificate();
    h2c = await createGrpcServer({ onConnection: echoPongs, authenticate: (t) => t === "k" });
    tls = await createGrpcServer({ onConnection: echoPongs, tls: cert });
  });
  afterAll(async () => {
    await h2c.close(100);
    await tls.close(100);
  });

  async function roundTrip(
    client: grpc.Client,
    metadata: grpc.Metadata,
  ): Promise<{ frames: Frame[]; status: grpc.StatusObject | undefined }> {
    const call = (client as unknown as { session(md: grpc.Metadata): grpc.ClientDuplexStream<Frame, Frame> }).session(
      metadata,
    );
    const frames: Frame[] = [];
    let status: grpc.StatusObject | undefined;
    const done = new Promise<void>((resolve) => {
      call.on("data", (f: Frame) => {
        frames.push(f);
        if (frames.length === 2) call.write({ goodbye: { reason: "done" } }, () => call.end());
      });
      call.on("status", (s: grpc.StatusObject) => {
        status = s;
        resolve();
      });
      call.on("error", () => undefined);
    });
    call.write({ ping: { nonce: "18446744073709551615", sentAtUs: "12" } });
    call.write({ ping: { nonce: "2" } });
    await done;
    client.close();
    return { frames, status };
  }

  it("talks to the h2c server with a bearer token in metadata", async () => {
    const Ctor = loadClientConstructor();
    const md = new grpc.Metadata();
    md.set("authorization", "Bearer k");
    const { frames, status } = await roundTrip(
      new Ctor(h2c.url.replace("grpc://", ""), grpc.credentials.createInsecure()),
      md,
    );
    expect(frames).toEqual([
      { pong: { nonce: "18446744073709551615", pingSentAtUs: "12" }, body: "pong" },
      { pong: { nonce: "2" }, body: "pong" },
    ]);
    expect(status?.code).toBe(grpc.status.OK);
  });

  it("is refused with UNAUTHENTICATED without the token", async () => {
    const Ctor = loadClientConstructor();
    const { frames, status } = await roundTrip(
      new Ctor(h2c.url.replace("grpc://", ""), grpc.credentials.createInsecure()),
      new grpc.Metadata(),
    );
    expect(frames).toEqual([]);
    expect(status?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("talks to the TLS server", async () => {
    const Ctor = loadClientConstructor();
    const client = new Ctor(tls.url.replace("grpcs://", ""), grpc.credentials.createSsl(Buffer.from(cert.cert)), {
      "grpc.ssl_target_name_override": "localhost",
    });
    const { frames, status } = await roundTrip(client, new grpc.Metadata());
    expect(frames.length).toBe(2);
    expect(status?.code).toBe(grpc.status.OK);
  });
});
