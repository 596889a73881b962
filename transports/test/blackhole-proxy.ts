/**
 * A loopback TCP proxy that can stop forwarding without closing anything, as
 * a network path that silently dies. Only keep-alives can detect that.
 * @internal test support
 */
import { createServer, connect as tcpConnect, type Socket } from "node:net";

export interface BlackholeProxy {
  port: number;
  /** Stop forwarding in both directions; sockets stay open. */
  blackhole(): void;
  close(): Promise<void>;
}

export function startBlackholeProxy(targetPort: number): Promise<BlackholeProxy> {
  let dead = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = tcpConnect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.on("data", (d) => {
      if (!dead) upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (!dead) client.write(d);
    });
    client.on("end", () => !dead && upstream.end());
    upstream.on("end", () => !dead && client.end());
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const addr = server.address();
      resolve({
        port: typeof addr === "object" && addr ? addr.port : 0,
        blackhole: () => (dead = true),
        close: () =>
          new Promise((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
