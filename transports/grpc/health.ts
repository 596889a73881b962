/**
 * `grpc.health.v1.Health/Check` on the gRPC binding, so grpc_health_probe,
 * Kubernetes gRPC probes and `grpcurl ... grpc.health.v1.Health/Check` work
 * without the schema (issue 16). Answered before Connect sees the call, with
 * the two messages encoded by hand: HealthCheckRequest { string service = 1; }
 * and HealthCheckResponse { ServingStatus status = 1; }. `Watch` and server
 * reflection are not served (UNIMPLEMENTED).
 */
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { BinaryReader } from "@bufbuild/protobuf/wire";

export const HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check";
/** The services this server answers for: "" (the server) and the P/D-Device service. */
const SERVICES = new Set(["", "pdd.v1.PdDeviceService"]);
const SERVING = 1;
const NOT_SERVING = 2;
const GRPC_NOT_FOUND = 5;
const GRPC_INVALID_ARGUMENT = 3;
/** A HealthCheckRequest names a service: a few hundred bytes at most. */
const MAX_REQUEST_BYTES = 4096;

/** The service a length-prefixed HealthCheckRequest names; undefined when it is malformed. */
export function requestedService(body: Buffer): string | undefined {
  if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) return undefined;
  try {
    const r = new BinaryReader(body.subarray(5));
    let service = "";
    while (r.pos < r.len) {
      const [field, wireType] = r.tag();
      if (field === 1 && wireType === 2) service = r.string();
      else r.skip(wireType, field);
    }
    return service;
  } catch {
    return undefined;
  }
}

/** Answers a Check call: SERVING while `serving()`, NOT_SERVING when draining, NOT_FOUND for another service. */
export function answerHealthCheck(req: Http2ServerRequest, res: Http2ServerResponse, serving: () => boolean): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size <= MAX_REQUEST_BYTES) chunks.push(c);
  });
  req.once("end", () => {
    const service = size > MAX_REQUEST_BYTES ? undefined : requestedService(Buffer.concat(chunks));
    const stream = req.stream;
    if (stream.destroyed) return;
    if (service === undefined || !SERVICES.has(service)) {
      const [status, message] =
        service === undefined
          ? [GRPC_INVALID_ARGUMENT, "malformed HealthCheckRequest"]
          : [GRPC_NOT_FOUND, `unknown service ${service.slice(0, 100)}`];
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": String(status), "grpc-message": message },
        { endStream: true },
      );
      return;
    }
    res.writeHead(200, { "content-type": "application/grpc" });
    res.addTrailers({ "grpc-status": "0" });
    res.end(Buffer.from([0, 0, 0, 0, 2, 0x08, serving() ? SERVING : NOT_SERVING]));
  });
}
