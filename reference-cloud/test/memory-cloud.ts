/**
 * The reference cloud's connection handling over `createLinkedPair()`, on a
 * simulated engine: no sockets, no model file, the same code path as a real
 * connection from the Hello on. For tests of one request's life. @internal
 */
import { create } from "@bufbuild/protobuf";
import { INSTANT, SimEngine } from "../../engine/index.js";
import { Codec, DeviceFrameSchema, ModelIdentitySchema, PROTOCOL_MINOR, type CloudFrame } from "../../proto/index.js";
import { createLinkedPair, type CloudStream, type DeviceStream } from "../../transports/index.js";
import { parseCloudConfig, type CloudConfigInput } from "../config.js";
import { CloudConnection } from "../connection.js";
import type { CloudContext } from "../context.js";
import { createLogger } from "../log.js";
import { createCloudMetrics } from "../metrics.js";
import { Admission } from "../scheduler.js";

export interface MemoryConnection {
  device: DeviceStream;
  /** Resolves when the connection has ended and every request it started has sent End. */
  served: Promise<void>;
  /** The first frame received (now or later) that matches. */
  frame(match: (f: CloudFrame) => boolean): Promise<CloudFrame>;
}

export interface MemoryCloud extends MemoryConnection {
  ctx: CloudContext;
  engine: SimEngine;
  /** Another connection (the first is this object's own), with a credential if given. */
  connect(token?: string): Promise<MemoryConnection>;
  /** Resolves once the cloud has counted `n` decoded tokens (pdd_decoded_tokens_total). */
  decoded(n: number): Promise<void>;
}

export interface MemoryCloudOptions {
  sequences?: number;
  /** Credentials and their limits of live requests; absent: no authentication. */
  keys?: Record<string, number | undefined>;
  /** The first connection's credential. */
  token?: string;
  /** Wraps the cloud's end of the first connection: a test's hook between the transport and the connection loop. */
  wrap?: (cloud: CloudStream) => CloudStream;
}

/** A cloud and one in-memory connection to it whose device end has had its HelloAck (it declared the cloud's model). */
export async function memoryCloud(config: CloudConfigInput = {}, o: MemoryCloudOptions = {}): Promise<MemoryCloud> {
  const engine = new SimEngine({ profile: INSTANT, sequences: o.sequences ?? 1 });
  const parsed = parseCloudConfig({ logLevel: "silent", listen: {}, ...config });
  const metrics = createCloudMetrics();
  const keys = o.keys;
  const ctx: CloudContext = {
    engine,
    admission: new Admission(engine.capacity, parsed.queueLimit, (active, queued) => {
      metrics.activeSequences.set(active);
      metrics.queueDepth.set(queued);
    }),
    config: parsed,
    metrics,
    log: createLogger("silent"),
    authorize: keys ? (token) => token !== undefined && token in keys : undefined,
    keyLimit: (token) => (token === undefined ? undefined : keys?.[token]),
    liveByKey: new Map(),
    draining: () => false,
    serverName: "memory",
    protocolMinor: PROTOCOL_MINOR,
    connections: new Set(),
    requests: new Set(),
  };
  const connect = (token?: string) => open(ctx, token);
  return { ...(await open(ctx, o.token, o.wrap)), ctx, engine, connect, decoded: countDecoded(ctx) };
}

async function open(
  ctx: CloudContext,
  token: string | undefined,
  wrap: (cloud: CloudStream) => CloudStream = (c) => c,
): Promise<MemoryConnection> {
  const { device, cloud } = createLinkedPair({ authToken: token });
  const served = new CloudConnection(wrap(cloud), ctx).serve();
  const seen: CloudFrame[] = [];
  const waiters = new Set<{ match: (f: CloudFrame) => boolean; resolve: (f: CloudFrame) => void }>();
  void (async () => {
    try {
      for await (const f of device) {
        seen.push(f);
        for (const w of [...waiters])
          if (w.match(f)) {
            waiters.delete(w);
            w.resolve(f);
          }
      }
    } catch {
      // the connection ended; waiters that matched nothing stay pending
    }
  })();
  const frame = (match: (f: CloudFrame) => boolean) => {
    const hit = seen.find(match);
    return hit ? Promise.resolve(hit) : new Promise<CloudFrame>((resolve) => waiters.add({ match, resolve }));
  };
  await device.send(
    create(DeviceFrameSchema, {
      body: {
        case: "hello",
        value: {
          versions: [{ major: 1, minor: 0 }],
          codecs: [Codec.PROTO],
          deviceModel: create(ModelIdentitySchema, { ...ctx.engine.info }),
        },
      },
    }),
  );
  await frame((f) => f.body.case === "helloAck");
  return { device, served, frame };
}

/**
 * Decoding observed where the cloud counts it: the request goes from there to
 * its paced wait without yielding, so a test can act while the request waits
 * to send the token it just decoded.
 */
function countDecoded(ctx: CloudContext): (n: number) => Promise<void> {
  let decoded = 0;
  const waiters = new Set<{ n: number; resolve: () => void }>();
  const counter = ctx.metrics.decodedTokens;
  const count = counter.inc;
  Object.assign(counter, {
    inc: (...args: unknown[]) => {
      Reflect.apply(count, counter, args);
      decoded++;
      for (const w of [...waiters])
        if (decoded >= w.n) {
          waiters.delete(w);
          w.resolve();
        }
    },
  });
  return (n) => (decoded >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.add({ n, resolve })));
}

/**
 * The cloud's end of a connection whose loop gets each frame after the first
 * (the Hello) only once `served` resolves or the connection has closed: the
 * transport receives as fast as ever, the cloud serves nothing meanwhile.
 * `onHold` is called as each such frame is taken from the transport and held.
 */
export function stalledCloud(served: Promise<void>, onHold?: () => void): (stream: CloudStream) => CloudStream {
  return (stream) => {
    async function* frames() {
      let first = true;
      for await (const f of stream) {
        if (!first) {
          onHold?.();
          await Promise.race([served, stream.closed]);
        }
        first = false;
        yield f;
      }
    }
    return new Proxy(stream, {
      get(target, key) {
        if (key === Symbol.asyncIterator) return () => frames();
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
}
