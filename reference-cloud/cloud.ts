/**
 * `startCloud`: the reference cloud peer — one engine, every configured
 * transport, authentication, metrics, and a graceful drain on close.
 */
import { createServer, type Server } from "node:http";
import { readFileSync } from "node:fs";
import { createHash, timingSafeEqual } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CloudFrameSchema, ErrorCode, PddError } from "../proto/index.js";
import { ensureDefaultModel, loadEngine, type InferenceEngine } from "../engine/index.js";
import {
  createGrpcServer,
  createSelfSignedCertificate,
  createWebSocketServer,
  createWebTransportServer,
  type CloudStream,
  type PddServer,
  type SelfSignedCertificate,
} from "../transports/index.js";
import { parseCloudConfig, type CloudConfig, type CloudConfigInput } from "./config.js";
import { CloudConnection } from "./connection.js";
import type { CloudContext } from "./context.js";
import { createLogger, type Logger } from "./log.js";
import { createCloudMetrics, type CloudMetrics } from "./metrics.js";
import { Admission } from "./scheduler.js";

export interface CloudPeer {
  readonly config: CloudConfig;
  readonly engine: InferenceEngine;
  readonly metrics: CloudMetrics;
  readonly urls: { ws?: string; grpc?: string; webtransport?: string; metrics?: string };
  /** The certificate WebTransport (and any TLS listener without a configured one) uses. */
  readonly certificate: SelfSignedCertificate | { cert: string; key: string };
  /** Re-reads the keys file (the CLI calls this on SIGHUP). */
  reloadKeys(): void;
  /** Connections open now. */
  readonly connections: number;
  /** Stops taking requests, lets running ones finish (up to drainSeconds), then stops. */
  close(options?: { drainSeconds?: number }): Promise<void>;
}

function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(":");
  return { host: hp.slice(0, i).replace(/^\[(.*)\]$/, "$1"), port: Number(hp.slice(i + 1)) };
}

/** Reads an API key file: one key per line, "#" comments, blank lines ignored. */
/** A keys file: one key per line, optionally followed by its limit of concurrent requests; # starts a comment. */
export function readKeys(path: string): { key: string; maxConcurrent?: number }[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .map((l, i) => {
      const [key = "", limit, extra] = l.replace(/#.*/, "").trim().split(/\s+/);
      if (key.length === 0) return undefined;
      if (extra !== undefined || (limit !== undefined && !/^[1-9]\d{0,5}$/.test(limit)))
        throw new Error(`${path}:${i + 1}: expected "key" or "key max_concurrent" (a positive integer)`);
      return { key, ...(limit ? { maxConcurrent: Number(limit) } : {}) };
    })
    .filter((k): k is { key: string; maxConcurrent?: number } => k !== undefined);
}

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

/**
 * Whether `token` is one of the keys, in a time that depends on neither the
 * token nor which key matched: fixed-length SHA-256 digests compared in
 * constant time, every key compared, no early exit (PDD-SEC-003).
 */
export function constantTimeIncludes(keyDigests: readonly Buffer[], token: string): boolean {
  const t = digest(token);
  let found = false;
  for (const k of keyDigests) found = timingSafeEqual(k, t) || found;
  return found;
}

export async function startCloud(
  input: CloudConfigInput,
  options: { engine?: InferenceEngine; log?: Logger } = {},
): Promise<CloudPeer> {
  const config = parseCloudConfig(input);
  const log = options.log ?? createLogger(config.logLevel, { component: "pdd-cloud" });
  const engine =
    options.engine ??
    (await loadEngine({
      modelPath: config.model ?? ensureDefaultModel("tiny"),
      sequences: config.sequences,
      threads: config.threads,
      contextSize: config.contextSize,
    }));
  const metrics = createCloudMetrics();
  const admission = new Admission(engine.capacity, config.queueLimit, (active, queued) => {
    metrics.activeSequences.set(active);
    metrics.queueDepth.set(queued);
  });
  let keyList = config.keysFile ? readKeys(config.keysFile) : undefined;
  let keys: Buffer[] | undefined = keyList?.map((k) => digest(k.key));
  let draining = false;
  const connections = new Set<CloudStream>();
  const ctx: CloudContext = {
    engine,
    admission,
    config,
    metrics,
    log,
    authorize: config.keysFile
      ? (token) => token !== undefined && keys !== undefined && constantTimeIncludes(keys, token)
      : undefined,
    keyLimit: (token) => (token === undefined ? undefined : keyList?.find((k) => k.key === token)?.maxConcurrent),
    liveByKey: new Map(),
    draining: () => draining,
    serverName: "pdd-cloud/0.1.0",
    connections: new Set(),
    requests: new Set(),
  };
  // A wrong transport credential is refused at the transport; a missing one
  // may still come in the Hello (PDD-SEC-002).
  const authenticate = config.keysFile
    ? (token: string | undefined) => token === undefined || ctx.authorize!(token)
    : undefined;
  const onConnection = (stream: CloudStream) => {
    if (draining) {
      void stream.close(ErrorCode.UNAVAILABLE, "draining");
      return;
    }
    connections.add(stream);
    stream.onClose(() => connections.delete(stream));
    void new CloudConnection(stream, ctx).serve();
  };
  const certificate = config.tls ?? (await createSelfSignedCertificate());
  const common = {
    onConnection,
    authenticate,
    maxFrameBytes: config.limits.maxFrameBytes,
    handshakeTimeoutMs: config.limits.handshakeTimeoutMs,
  };
  const servers: PddServer[] = [];
  const urls: CloudPeer["urls"] = {};
  try {
    if (config.listen.ws) {
      const s = await createWebSocketServer({ ...common, ...splitHostPort(config.listen.ws), tls: config.tls });
      servers.push(s);
      urls.ws = s.url;
    }
    if (config.listen.grpc) {
      const s = await createGrpcServer({ ...common, ...splitHostPort(config.listen.grpc), tls: config.tls });
      servers.push(s);
      urls.grpc = s.url;
    }
    if (config.listen.webtransport) {
      const s = await createWebTransportServer({
        ...common,
        ...splitHostPort(config.listen.webtransport),
        tls: certificate,
      });
      servers.push(s);
      urls.webtransport = s.url;
    }
  } catch (e) {
    for (const s of servers) await s.close(0);
    throw e;
  }
  let metricsServer: Server | undefined;
  if (config.metricsPort !== undefined) {
    metricsServer = createServer((req, res) => {
      if (req.url !== "/metrics") return void res.writeHead(404).end();
      void metrics.registry
        .metrics()
        .then((text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text));
    });
    await new Promise<void>((r) => metricsServer!.listen(config.metricsPort, "127.0.0.1", () => r()));
    const a = metricsServer.address();
    urls.metrics = `http://127.0.0.1:${typeof a === "object" && a ? a.port : config.metricsPort}/metrics`;
  }
  log.info("cloud listening", { ...urls, model: engine.info.name, sequences: engine.capacity });

  return {
    config,
    engine,
    metrics,
    urls,
    certificate,
    get connections() {
      return connections.size;
    },
    reloadKeys() {
      if (!config.keysFile) return;
      try {
        keyList = readKeys(config.keysFile);
        keys = keyList.map((k) => digest(k.key));
        log.info("keys reloaded", { count: keys.length });
        for (const c of ctx.connections) c.recheckCredential(); // revoked keys lose their connections (PDD-SEC-009)
      } catch (e) {
        log.error("keys reload failed; keeping the old keys", { error: (e as Error).message });
      }
    },
    async close(opts = {}) {
      draining = true;
      const goodbye = create(CloudFrameSchema, {
        body: { case: "goodbye", value: { code: ErrorCode.UNAVAILABLE, reason: "draining" } },
      });
      for (const c of connections) void c.send(goodbye).catch(() => undefined);
      const deadline = Date.now() + 1000 * (opts.drainSeconds ?? config.drainSeconds);
      while (ctx.requests.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // Past the deadline: end what is left with UNAVAILABLE (PDD-CONN-015), then stop.
      const left = [...ctx.requests];
      for (const r of left)
        r.halt({
          kind: "error",
          error: new PddError(ErrorCode.UNAVAILABLE, "cloud shutting down", { retryable: true }),
        });
      await Promise.race([Promise.all(left.map((r) => r.done)), new Promise((r) => setTimeout(r, 2_000))]);
      for (const s of servers) await s.close(500);
      if (metricsServer) await new Promise<void>((r) => metricsServer!.close(() => r()));
      if (!options.engine) await engine.close();
      log.info("cloud stopped");
    },
  };
}
