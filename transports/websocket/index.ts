export { createWebSocketServer, type WebSocketServerOptions } from "./server.js";
export { connectWebSocket } from "./client.js";
export { SUBPROTOCOLS, subprotocolFor } from "./subprotocols.js";
