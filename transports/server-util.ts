/** Plumbing the server bindings share. @internal */
import type { Server } from "node:net";
import type { MessageStream } from "./message-stream.js";

export function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : port);
    });
  });
}

/** Keeps the open connections of a server so that close() can end them. */
export function trackConnections<S extends MessageStream<unknown, unknown>>() {
  const open = new Set<S>();
  return {
    add(stream: S) {
      open.add(stream);
      stream.onClose(() => open.delete(stream));
    },
    get size() {
      return open.size;
    },
    async closeAll(graceMs: number) {
      const all = [...open];
      await Promise.race([
        Promise.all(all.map((s) => s.close(12 /* UNAVAILABLE */, "server shutting down"))),
        new Promise((r) => setTimeout(r, graceMs)),
      ]);
      for (const s of open) s.abort("server shut down");
    },
  };
}
