/**
 * A loopback network emulator: a TCP proxy in front of a cloud that delays
 * every byte by a one-way latency and serializes each direction of each
 * connection at a bandwidth, like a device's access link. It carries all
 * three bindings (WebSocket, gRPC and WebTransport over HTTP/2 are TCP), so
 * benchmarks measure the real transports over an emulated path. netem needs
 * network namespaces this machine's sandbox does not grant; this needs none.
 *
 * Order is kept: a chunk is delivered at max(arrival-side departure +
 * delay + jitter, the previous chunk's delivery). Memory is bounded: a
 * direction holding more than `queueBytes` undelivered pauses its source.
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { prng } from "../shared/index.js";

export interface NetemOptions {
  /** Where the cloud listens. */
  target: { host?: string; port: number };
  /** Round-trip time added, ms (half each way). */
  rttMs: number;
  /** Per-connection, per-direction bandwidth, Mbit/s; default unlimited. */
  bandwidthMbps?: number;
  /** ± uniform jitter on each chunk's one-way delay, ms (order is still kept); default 0. */
  jitterMs?: number;
  seed?: number;
  /** Undelivered bytes per direction before the source is paused; default 4 MiB. */
  queueBytes?: number;
  /** Where the proxy listens; default 127.0.0.1 on a free port. */
  listen?: { host?: string; port?: number };
}

export interface Netem {
  host: string;
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  /** Stops forwarding in both directions; sockets stay open (a path that silently dies). */
  blackhole(): void;
  /** Connections accepted so far, and bytes delivered each way. */
  readonly stats: { connections: number; upBytes: number; downBytes: number };
  close(): Promise<void>;
}

/**
 * When each chunk of one direction arrives: it leaves after the chunks before
 * it have (serialization at the bandwidth), travels the one-way delay (±
 * jitter), and never overtakes the chunk before it. Pure, for tests.
 */
export class LinkSchedule {
  private lastDepart = 0;
  private lastDeliver = 0;
  constructor(
    readonly oneWayMs: number,
    readonly bytesPerMs: number,
  ) {}

  deliverAt(now: number, bytes: number, jitterMs = 0): number {
    const depart = Math.max(now, this.lastDepart) + bytes / this.bytesPerMs;
    this.lastDepart = depart;
    this.lastDeliver = Math.max(depart + Math.max(0, this.oneWayMs + jitterMs), this.lastDeliver);
    return this.lastDeliver;
  }
}

export async function startNetem(o: NetemOptions): Promise<Netem> {
  const rand = prng(o.seed ?? 1);
  const oneWay = o.rttMs / 2;
  const bytesPerMs = o.bandwidthMbps ? (o.bandwidthMbps * 1e6) / 8 / 1000 : Number.POSITIVE_INFINITY;
  const queueBytes = o.queueBytes ?? 4 << 20;
  const sockets = new Set<Socket>();
  const stats = { connections: 0, upBytes: 0, downBytes: 0 };
  let dead = false;

  /**
   * One direction of one connection: from `src` to `dst`. One FIFO and one
   * timer per direction: timers of different durations may fire out of
   * order, and a byte stream must not.
   */
  const link = (src: Socket, dst: Socket, count: (n: number) => void) => {
    const schedule = new LinkSchedule(oneWay, bytesPerMs);
    const fifo: { at: number; chunk: Buffer }[] = [];
    let queued = 0;
    let ended = false;
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      const now = performance.now();
      while (fifo.length > 0 && fifo[0]!.at <= now + 0.5) {
        const { chunk } = fifo.shift()!;
        queued -= chunk.length;
        if (!dead && !dst.destroyed) {
          dst.write(chunk);
          count(chunk.length);
        }
      }
      if (queued <= queueBytes / 2 && src.isPaused() && !src.destroyed) src.resume();
      if (fifo.length > 0) timer = setTimeout(pump, fifo[0]!.at - now);
      else if (ended && !dead && !dst.destroyed) dst.end();
    };
    src.on("data", (chunk: Buffer) => {
      if (dead) return;
      const at = schedule.deliverAt(performance.now(), chunk.length, o.jitterMs ? o.jitterMs * (2 * rand() - 1) : 0);
      fifo.push({ at, chunk });
      queued += chunk.length;
      if (queued > queueBytes) src.pause();
      if (timer === undefined) timer = setTimeout(pump, at - performance.now()); // one pump pending at a time
    });
    // A half-close or a close follows the data it comes after.
    const finish = () => {
      ended = true;
      if (fifo.length === 0 && !dead && !dst.destroyed) dst.end();
    };
    src.on("end", finish);
    src.on("close", finish);
  };

  const server: Server = createServer((client) => {
    stats.connections++;
    const upstream = tcpConnect(o.target.port, o.target.host ?? "127.0.0.1");
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    for (const [s, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(s);
      s.on("error", () => other.destroy()); // a reset is passed on at once
      s.on("close", () => sockets.delete(s));
    }
    link(client, upstream, (n) => (stats.upBytes += n));
    link(upstream, client, (n) => (stats.downBytes += n));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.listen?.port ?? 0, o.listen?.host ?? "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const host = o.listen?.host ?? "127.0.0.1";
  return {
    host,
    port,
    stats,
    via(url: string): string {
      const u = new URL(url);
      u.hostname = host;
      u.port = String(port);
      return u.toString().replace(/\/$/, url.endsWith("/") ? "/" : "");
    },
    blackhole: () => {
      dead = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
