/** The bindings the shared transport suite runs against. @internal test support */
import type { CodecName } from "../../proto/index.js";
import { connect, createGrpcServer, createWebSocketServer, createWebTransportServer } from "../index.js";
import type { ClientOptions, DeviceStream, PddServer, ServerOptions } from "../message-stream.js";
import type { SelfSignedCertificate } from "../tls.js";

export interface Binding {
  name: string;
  codec: CodecName;
  tls: boolean;
  /** Whether a close carries the closer's code and reason to the peer. */
  closeCarriesCode: boolean;
  serve(options: ServerOptions, cert: SelfSignedCertificate): Promise<PddServer>;
  connect(url: string, options: ClientOptions, cert: SelfSignedCertificate): Promise<DeviceStream>;
}

const dial = (url: string, options: ClientOptions, cert: SelfSignedCertificate, codec: CodecName) =>
  connect(url, { ca: cert.cert, codec, ...options });

export const BINDINGS: Binding[] = [
  {
    name: "ws (proto)",
    codec: "proto",
    tls: false,
    closeCarriesCode: true,
    serve: (o) => createWebSocketServer(o),
    connect: (u, o, c) => dial(u, o, c, "proto"),
  },
  {
    name: "wss (msgpack)",
    codec: "msgpack",
    tls: true,
    closeCarriesCode: true,
    serve: (o, c) => createWebSocketServer({ ...o, tls: c }),
    connect: (u, o, c) => dial(u, o, c, "msgpack"),
  },
  {
    name: "grpc h2c",
    codec: "proto",
    tls: false,
    closeCarriesCode: false,
    serve: (o) => createGrpcServer(o),
    connect: (u, o, c) => dial(u, o, c, "proto"),
  },
  {
    name: "grpcs",
    codec: "proto",
    tls: true,
    closeCarriesCode: false,
    serve: (o, c) => createGrpcServer({ ...o, tls: c }),
    connect: (u, o, c) => dial(u, o, c, "proto"),
  },
  {
    name: "webtransport (proto)",
    codec: "proto",
    tls: true,
    closeCarriesCode: true,
    serve: (o, c) => createWebTransportServer({ ...o, tls: c }),
    connect: (u, o, c) => dial(u, o, c, "proto"),
  },
  {
    name: "webtransport (msgpack)",
    codec: "msgpack",
    tls: true,
    closeCarriesCode: true,
    serve: (o, c) => createWebTransportServer({ ...o, tls: c }),
    connect: (u, o, c) => dial(u, o, c, "msgpack"),
  },
];
