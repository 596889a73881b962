export { createWebTransportServer, type WebTransportServerOptions } from "./server.js";
export { connectWebTransport, type WebTransportClientOptions } from "./client.js";
export { loadWebTransport } from "./module.js";
