export { createGrpcServer, SESSION_PATH } from "./server.js";
export { connectGrpc, type GrpcClientOptions } from "./client.js";
