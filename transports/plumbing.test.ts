import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CloudFrameSchema, DeviceFrameSchema, ErrorCode, PddError } from "../proto/index.js";
import { closeReason, fromGrpcStatus, fromWsCloseCode, grpcStatus, wsCloseCode } from "./error-mapping.js";
import { bearerToken, transportToken } from "./auth.js";
import { createLinkedPair } from "./memory/linked-pair.js";
import { sendRaw } from "./test/raw.js";
import { codecFromQuery, parseEndpoint } from "./url.js";

describe("URL schemes pick the binding", () => {
  it.each([
    ["ws://127.0.0.1:4100/pdd", "websocket", false, 4100, "/pdd"],
    ["wss://cloud.example/pdd?x=1", "websocket", true, 443, "/pdd?x=1"],
    ["grpc://[::1]:50051", "grpc", false, 50051, "/"],
    ["grpcs://cloud.example", "grpc", true, 443, "/"],
    ["https://127.0.0.1:4433/pdd/v1", "webtransport", true, 4433, "/pdd/v1"],
  ])("%s", (url, transport, tls, port, path) => {
    expect(parseEndpoint(url)).toMatchObject({ transport, tls, port, path });
  });

  it("refuses an unknown scheme and a non-URL with INVALID_ARGUMENT", () => {
    for (const bad of ["http://x", "tcp://x:1", "localhost:4100", ""]) {
      expect(() => parseEndpoint(bad)).toThrow(PddError);
    }
    expect(() => parseEndpoint("http://x")).toThrow(/use one of ws:\/\/, wss:\/\/, grpc:\/\/, grpcs:\/\/, https:\/\//);
  });

  it("reads the WebTransport codec from the query", () => {
    expect(codecFromQuery("/pdd/v1")).toBe("proto");
    expect(codecFromQuery("/pdd/v1?codec=msgpack")).toBe("msgpack");
    expect(codecFromQuery("/pdd/v1?codec=json")).toBe("invalid");
  });
});

describe("credentials on the transport", () => {
  it("takes a bearer header, else the access_token query parameter", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("Basic abc")).toBeUndefined();
    expect(transportToken(undefined, "/pdd?access_token=q")).toBe("q");
    expect(transportToken("Bearer h", "/pdd?access_token=q")).toBe("h");
    expect(transportToken(undefined, "/pdd")).toBeUndefined();
  });
});

describe("error-code mappings (spec §13.3)", () => {
  it("maps connection errors to WebSocket close codes 4000+code and back", () => {
    expect(wsCloseCode(ErrorCode.UNAUTHENTICATED)).toBe(4006);
    expect(wsCloseCode(ErrorCode.UNSPECIFIED)).toBe(1000);
    for (let c = 1; c <= 21; c++) expect(fromWsCloseCode(wsCloseCode(c))).toBe(c);
    expect(fromWsCloseCode(1009)).toBe(ErrorCode.FRAME_TOO_LARGE);
  });

  it("maps to gRPC statuses as the table says", () => {
    expect(grpcStatus(ErrorCode.MALFORMED_FRAME)).toBe(3);
    expect(grpcStatus(ErrorCode.FRAME_TOO_LARGE)).toBe(8);
    expect(grpcStatus(ErrorCode.UNAUTHENTICATED)).toBe(16);
    expect(grpcStatus(ErrorCode.KV_INTEGRITY)).toBe(2);
    expect(fromGrpcStatus(16)).toBe(ErrorCode.UNAUTHENTICATED);
    expect(fromGrpcStatus(8)).toBe(ErrorCode.FRAME_TOO_LARGE);
  });

  it("cuts a close reason to 123 bytes without splitting a UTF-8 character", () => {
    const r = closeReason("é".repeat(100));
    expect(Buffer.byteLength(r)).toBeLessThanOrEqual(123);
    expect(r).toBe("é".repeat(61));
  });
});

describe("in-memory linked pair", () => {
  it("carries frames both ways through the codec, and closes both ends", async () => {
    const { device, cloud } = createLinkedPair({ codec: "msgpack" });
    await device.send(create(DeviceFrameSchema, { body: { case: "ping", value: { nonce: 3n } } }));
    const up = await cloud[Symbol.asyncIterator]().next();
    expect(up.value?.body).toMatchObject({ case: "ping", value: { nonce: 3n } });
    await cloud.send(create(CloudFrameSchema, { body: { case: "pong", value: { nonce: 3n } } }));
    const down = await device[Symbol.asyncIterator]().next();
    expect(down.value?.body.case).toBe("pong");
    await cloud.close(ErrorCode.UNAVAILABLE, "draining");
    expect(await device.closed).toMatchObject({ initiator: "peer", code: ErrorCode.UNAVAILABLE, reason: "draining" });
  });

  it("reports a malformed frame as a typed error from the iterator", async () => {
    const { device, cloud } = createLinkedPair();
    await sendRaw(device, Uint8Array.of(0x0a, 0xff));
    await expect(cloud[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: ErrorCode.MALFORMED_FRAME });
  });
});
