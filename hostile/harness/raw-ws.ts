/**
 * WebSocket written by hand over TCP, for frames a WebSocket library will
 * not send: a header that declares a large message whose payload never
 * finishes.
 */
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

/** Opens a WebSocket (upgrade done) on a plain TCP socket. */
export async function rawWebSocket(url: string, codec: "proto" | "msgpack", token?: string): Promise<Socket> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  socket.write(
    [
      `GET ${u.pathname} HTTP/1.1`,
      `Host: ${u.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
      "Sec-WebSocket-Version: 13",
      `Sec-WebSocket-Protocol: pdd.v1.${codec}`,
      ...(token ? [`Authorization: Bearer ${token}`] : []),
      "",
      "",
    ].join("\r\n"),
  );
  await new Promise<void>((resolve, reject) => {
    let head = "";
    const onData = (b: Buffer) => {
      head += b.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      if (head.startsWith("HTTP/1.1 101")) resolve();
      else reject(new Error(head.split("\r\n")[0]));
    };
    socket.on("data", onData);
  });
  return socket;
}

/** A masked binary frame header declaring `length` payload bytes (mask key 0: the payload goes as is). */
export function binaryHeader(length: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h; // bytes 10..13: the zero mask key
}
