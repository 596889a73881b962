/**
 * `startCloud`: the reference cloud peer — one engine, every configured
 * transport, authentication, metrics, and a graceful drain on close.
 */
import { createServer, type Server } from "node:http";
import { readFileSync } from "node:fs";
import { createHash, timingSafeEqual } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CloudFrameSchema, ErrorCode, PddError, PROTOCOL_MINOR } from "../proto/index.js";
import { ensureDefaultModel, LlamaServerEngine, loadEngine, type InferenceEngine } from "../engine/index.js";
import {
  createGrpcServer,
  createSelfSignedCertificate,
  createWebSocketServer,
  createWebTransportServer,
  type CloudStream,
  type PddServer,
  type SelfSignedCertificate,
  servingState,
  type ServingState,
} from "../transports/index.js";
import { parseCloudConfig, type CloudConfig, type CloudConfigInput } from "./config.js";
import { CloudConnection } from "./connection.js";
import type { CloudContext } from "./context.js";
import { createLogger, type Logger } from "./log.js";
import { createCloudMetrics, registerBackendMetrics, type CloudMetrics } from "./metrics.js";
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

/** The engine the config names: node-llama-cpp in this process, or llama-server backends. */
async function createEngine(config: CloudConfig, log: Logger): Promise<InferenceEngine> {
  if (config.engine === "llama-server") {
    if (!config.backends?.length)
      throw new PddError(ErrorCode.INVALID_ARGUMENT, "engine llama-server needs at least one backend URL");
    return LlamaServerEngine.connect({
      backends: config.backends,
      modelPath: config.model,
      slotSaveDir: config.slotSaveDir,
      backendApi: config.backendApi,
      refineModel: config.refineModel,
      onBackendChange: (b, why) =>
        (b.healthy ? log.info : log.warn)(b.healthy ? "backend back in rotation" : "backend out of rotation", {
          backend: b.url,
          why,
        }),
    });
  }
  if (config.backends?.length || config.backendApi)
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      "backends and backendApi are for engine llama-server (--engine llama-server)",
    );
  if (config.refineModel)
    throw new PddError(
      ErrorCode.INVALID_ARGUMENT,
      "a refinement model is for engine llama-server: node-llama-cpp scores with the served model",
    );
  return loadEngine({
    modelPath: config.model ?? ensureDefaultModel("tiny"),
    sequences: config.sequences,
    threads: config.threads,
    contextSize: config.contextSize,
  });
}

export async function startCloud(
  input: CloudConfigInput,
  options: {
    engine?: InferenceEngine;
    log?: Logger;
    /**
     * The highest 1.x minor to negotiate (default PROTOCOL_MINOR). @internal: tests that a 1.0 or 1.1
     * cloud keeps that version's rules (PDD-VER-007) set 0 or 1.
     */
    protocolMinor?: number;
  } = {},
): Promise<CloudPeer> {
  const config = parseCloudConfig(input);
  const log = options.log ?? createLogger(config.logLevel, { component: "pdd-cloud" });
  const engine = options.engine ?? (await createEngine(config, log));
  const metrics = createCloudMetrics();
  if (engine.backends) registerBackendMetrics(metrics, () => engine.backends!());
  const keyRing = new KeyRing(config.keysFile, log);
  const state = { draining: false, connections: new Set<CloudStream>() };
  const ctx = cloudContext(config, engine, metrics, log, keyRing, () => state.draining);
  ctx.protocolMinor = options.protocolMinor ?? PROTOCOL_MINOR;
  const onConnection = (stream: CloudStream) => {
    if (state.draining) {
      stream
        .close(ErrorCode.UNAVAILABLE, "draining")
        .catch((e: unknown) => log.debug("close failed", { error: `${e}` }));
      return;
    }
    state.connections.add(stream);
    stream.onClose(() => state.connections.delete(stream));
    new CloudConnection(stream, ctx)
      .serve()
      .catch((e: unknown) => log.error("connection ended with an error", { error: `${e}` }));
  };
  const certificate = config.tls ?? (await createSelfSignedCertificate());
  // A wrong transport credential is refused at the transport; a missing one
  // may still come in the Hello (PDD-SEC-002).
  const authenticate = ctx.authorize && ((token: string | undefined) => token === undefined || ctx.authorize!(token));
  // grpc.health.v1 says NOT_SERVING from the moment the cloud begins to drain (Watch calls see it).
  const serving = servingState(true);
  const { servers, urls } = await listenAll(config, certificate, { onConnection, authenticate, serving });
  const metricsServer =
    config.metricsPort === undefined ? undefined : await serveMetrics(metrics, config.metricsPort, log);
  if (metricsServer) urls.metrics = metricsServer.url;
  log.info("cloud listening", { ...urls, model: engine.info.name, sequences: engine.capacity });

  return {
    config,
    engine,
    metrics,
    urls,
    certificate,
    get connections() {
      return state.connections.size;
    },
    reloadKeys: () => {
      keyRing.reload();
      for (const c of ctx.connections) c.recheckCredential(); // revoked keys lose their connections (PDD-SEC-009)
    },
    async close(opts = {}) {
      state.draining = true;
      serving.set(false);
      await drain(ctx, state.connections, 1000 * (opts.drainSeconds ?? config.drainSeconds));
      for (const s of servers) await s.close(500);
      if (metricsServer) await new Promise<void>((r) => metricsServer.server.close(() => r()));
      if (!options.engine) await engine.close();
      log.info("cloud stopped");
    },
  };
}

/** The API keys of a keys file, re-read on reloadKeys (SIGHUP). */
class KeyRing {
  list: { key: string; maxConcurrent?: number }[] | undefined;
  /** SHA-256 of each key (PDD-SEC-003). */
  keys: Buffer[] | undefined;
  constructor(
    private readonly file: string | undefined,
    private readonly log: Logger,
  ) {
    this.list = file ? readKeys(file) : undefined;
    this.keys = this.list?.map((k) => digest(k.key));
  }

  reload(): void {
    if (!this.file) {
      // A SIGHUP that does nothing says so, rather than leaving the operator to guess.
      this.log.warn("keys not reloaded: no keys file (start with --keys FILE)");
      return;
    }
    try {
      this.list = readKeys(this.file);
      this.keys = this.list.map((k) => digest(k.key));
      this.log.info("keys reloaded", { count: this.keys.length });
    } catch (e) {
      this.log.error("keys reload failed; keeping the old keys", { error: (e as Error).message });
    }
  }
}

function cloudContext(
  config: CloudConfig,
  engine: InferenceEngine,
  metrics: CloudMetrics,
  log: Logger,
  keyRing: KeyRing,
  draining: () => boolean,
): CloudContext {
  const admission = new Admission(engine.capacity, config.queueLimit, (active, queued) => {
    metrics.activeSequences.set(active);
    metrics.queueDepth.set(queued);
  });
  return {
    engine,
    admission,
    config,
    metrics,
    log,
    authorize: config.keysFile
      ? (token) => token !== undefined && keyRing.keys !== undefined && constantTimeIncludes(keyRing.keys, token)
      : undefined,
    keyLimit: (token) => (token === undefined ? undefined : keyRing.list?.find((k) => k.key === token)?.maxConcurrent),
    liveByKey: new Map(),
    draining,
    serverName: "pdd-cloud/0.1.0",
    protocolMinor: PROTOCOL_MINOR,
    connections: new Set(),
    requests: new Set(),
  };
}

/** Starts a server for each configured binding; closes the ones started if one fails. */
async function listenAll(
  config: CloudConfig,
  certificate: CloudPeer["certificate"],
  handlers: {
    onConnection: (stream: CloudStream) => void;
    authenticate: ((token?: string) => boolean) | undefined;
    serving: ServingState;
  },
): Promise<{ servers: PddServer[]; urls: CloudPeer["urls"] }> {
  const common = {
    ...handlers,
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
      const hostPort = splitHostPort(config.listen.webtransport);
      const s = await createWebTransportServer({ ...common, ...hostPort, tls: certificate });
      servers.push(s);
      urls.webtransport = s.url;
    }
  } catch (e) {
    for (const s of servers) await s.close(0);
    throw e;
  }
  return { servers, urls };
}

/** Serves Prometheus text on http://127.0.0.1:PORT/metrics. */
async function serveMetrics(
  metrics: CloudMetrics,
  port: number,
  log: Logger,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") return void res.writeHead(404).end();
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (e: unknown) => {
        log.error("metrics collection failed", { error: `${e}` });
        res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  const a = server.address();
  return { server, url: `http://127.0.0.1:${typeof a === "object" && a ? a.port : port}/metrics` };
}

/**
 * Says Goodbye on every connection, lets running requests finish for up to
 * `graceMs`, then ends what is left with UNAVAILABLE (PDD-CONN-015).
 */
async function drain(ctx: CloudContext, connections: Iterable<CloudStream>, graceMs: number): Promise<void> {
  const goodbye = create(CloudFrameSchema, {
    body: { case: "goodbye", value: { code: ErrorCode.UNAVAILABLE, reason: "draining" } },
  });
  for (const c of connections) c.send(goodbye).catch(() => undefined); // a closing connection needs no Goodbye
  const deadline = Date.now() + graceMs;
  while (ctx.requests.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const left = [...ctx.requests];
  for (const r of left)
    r.halt({
      kind: "error",
      error: new PddError(ErrorCode.UNAVAILABLE, "cloud shutting down", { retryable: true }),
    });
  await Promise.race([Promise.all(left.map((r) => r.done)), new Promise((r) => setTimeout(r, 2_000))]);
}
