/**
 * `pdd device serve`: an OpenAI-compatible HTTP API in front of a PdDevice,
 * so apps, SDKs and chat UIs use P/D-Device unchanged.
 *
 *   POST /v1/chat/completions, /v1/completions   (SSE with "stream": true)
 *   GET  /v1/models, /v1/models/{id}, /health (open), /metrics (Prometheus)
 *   OPTIONS (CORS preflight for --cors-origin); a known path with another method: 405
 *
 * Every request passes the guard (Host, Origin, API key, JSON body;
 * openai-guard.ts), every error has OpenAI's shape (openai-errors.ts), and
 * every request writes one JSON log line and emits it as a "request" event.
 * The server listens before the model is loaded: /health says 503 until it is.
 */
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { PdDevice } from "./device.js";
import { Admission } from "./openai-admission.js";
import { ApiError, sendError, sendJson } from "./openai-errors.js";
import { complete, type GenerateContext, type GenerationLog } from "./openai-generate.js";
import { Guard } from "./openai-guard.js";
import { createServeMetrics, type ServeMetrics } from "./openai-metrics.js";
import { parseChat, parseCompletion } from "./openai-schema.js";
import { loadChatTemplate } from "./openai-template.js";

export interface ServeOptions {
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Port; default 0 (any free one). */
  port?: number;
  /** The model id clients name (`--alias`); default "pdd-device". Another name gets 404 model_not_found. */
  alias?: string;
  /** Bearer key every route but /health requires. */
  apiKey?: string;
  /** Host names served besides loopback names and IP literals; "*": any (openai-guard.ts). */
  allowedHosts?: string[];
  /** Origins allowed cross-origin, or "*". Default: none. */
  corsOrigins?: string[];
  /** Requests generating at once; default: the device's sequences. */
  parallel?: number;
  /** Requests waiting beyond those; more get 503 + Retry-After. Default 8. */
  queue?: number;
  /** Largest request body, bytes; more gets 413. Default 4 MiB. */
  maxBodyBytes?: number;
  /** Pace of streamed answers, ms per token; default 40 (the device's default target). Non-streamed answers are never paced. */
  streamTpotMs?: number;
  /** A Jinja chat template to use instead of the model's. */
  chatTemplateFile?: string;
  /** Where the per-request JSON log lines go; default nowhere. */
  log?: (line: string) => void;
}

/** One request's log line. */
export interface RequestLog extends GenerationLog {
  time: string;
  method: string;
  path: string;
  status: number;
  ms: number;
  stream?: boolean;
  error?: string;
}

export interface OpenAiServer {
  /** The API base URL, ending in /v1. */
  url: string;
  /** Resolves once the device is loaded and requests are served. */
  ready: Promise<void>;
  /** "request" (RequestLog) after each request ends, whether answered, refused or cancelled. */
  events: EventEmitter<{ request: [RequestLog] }>;
  /** Where the chat template comes from, once ready: "gguf", "file" or "fallback". */
  chatTemplate: string | undefined;
  close(): Promise<void>;
}

const ROUTES: Record<string, string[]> = {
  "/health": ["GET"],
  "/metrics": ["GET"],
  "/v1/models": ["GET"],
  "/v1/models/{id}": ["GET"],
  "/v1/chat/completions": ["POST"],
  "/v1/completions": ["POST"],
};

function routeOf(path: string): string | undefined {
  if (ROUTES[path]) return path;
  return path.startsWith("/v1/models/") && path.length > "/v1/models/".length ? "/v1/models/{id}" : undefined;
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new ApiError(413, `the request body is over ${limit} bytes`, "invalid_request_error", null, "request_too_large");
  if (Number(req.headers["content-length"] ?? 0) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw tooLarge();
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ApiError(
      400,
      "We could not parse the JSON body of your request.",
      "invalid_request_error",
      null,
      "invalid_json",
    );
  }
}

const notFound = (method: string | undefined, path: string) =>
  new ApiError(
    404,
    `Unknown request URL: ${method} ${path.slice(0, 200)}`,
    "invalid_request_error",
    null,
    "unknown_url",
  );

const notAllowed = (method: string | undefined, route: string, allowed: string[]) =>
  new ApiError(
    405,
    `${method} is not allowed on ${route}; use ${allowed.join(", ")}`,
    "invalid_request_error",
    null,
    "method_not_allowed",
    { allow: `${allowed.join(", ")}, OPTIONS` },
  );

/** The server's state: the guard, the metrics, and, once the device is loaded, what generation needs. */
class OpenAiHttp {
  readonly events = new EventEmitter<{ request: [RequestLog] }>();
  readonly modelId: string;
  readonly ready: Promise<void>;
  ctx: GenerateContext | undefined;
  private loadError: Error | undefined;
  private readonly guard: Guard;
  private readonly metrics: ServeMetrics;

  constructor(
    device: PdDevice | Promise<PdDevice>,
    private readonly options: ServeOptions,
  ) {
    this.modelId = options.alias ?? "pdd-device";
    this.guard = new Guard({
      bindHost: options.host ?? "127.0.0.1",
      allowedHosts: options.allowedHosts,
      corsOrigins: options.corsOrigins,
      apiKey: options.apiKey,
    });
    this.metrics = createServeMetrics({
      active: () => this.ctx?.admission.active ?? 0,
      queued: () => this.ctx?.admission.queued ?? 0,
      sequencesBusy: () => this.ctx?.device.engine.busy ?? 0,
    });
    this.ready = this.load(device);
    this.ready.catch((e: Error) => (this.loadError = e));
  }

  private async load(device: PdDevice | Promise<PdDevice>): Promise<void> {
    const d = await device;
    const o = this.options;
    this.ctx = {
      device: d,
      modelId: this.modelId,
      template: await loadChatTemplate(d.engine, o.chatTemplateFile),
      admission: new Admission(o.parallel ?? d.engine.capacity, o.queue ?? 8),
      metrics: this.metrics,
      streamTpotMs: o.streamTpotMs ?? 40,
    };
  }

  /** What generation needs, or 503 while the model loads (or failed to). */
  private loaded(): GenerateContext {
    if (this.ctx) return this.ctx;
    const failed = this.loadError;
    throw new ApiError(
      503,
      failed ? `the model failed to load: ${failed.message}` : "Loading model",
      "overloaded_error",
      null,
      failed ? "load_failed" : "loading",
      { "retry-after": "1" },
    );
  }

  private model() {
    const chat_template = this.ctx?.template.source;
    return { id: this.modelId, object: "model", created: 0, owned_by: "pd-device", pdd: { chat_template } };
  }

  /** One request: handled, its errors answered in OpenAI's shape, then logged, counted and emitted. */
  readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const t0 = performance.now();
    const log: Partial<RequestLog> = { time: new Date().toISOString(), method: req.method ?? "", path: "(unknown)" };
    const gone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort(new Error("the client closed the connection"));
    });
    void this.handle(req, res, log, gone.signal)
      .catch((e: unknown) => {
        if (gone.signal.aborted) {
          log.outcome = "cancelled";
          return;
        }
        const err = ApiError.from(e);
        log.error = err.message.slice(0, 300);
        sendError(res, err);
      })
      .finally(() => {
        const status = res.headersSent ? res.statusCode : 499; // 499: the client went away first (nginx's code)
        const entry = { ...log, status, ms: Math.round(performance.now() - t0) } as RequestLog;
        this.metrics.requests.inc({ route: entry.path, status: String(status) });
        this.options.log?.(JSON.stringify(entry));
        this.events.emit("request", entry);
      });
  };

  /** Guard, route, method, key, then the route's work. */
  private async handle(req: IncomingMessage, res: ServerResponse, log: Partial<RequestLog>, gone: AbortSignal) {
    this.guard.checkHost(req);
    this.guard.checkOrigin(req, res);
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method === "OPTIONS") return this.guard.preflight(req, res);
    const route = routeOf(path);
    if (!route) throw notFound(req.method, path);
    log.path = route;
    const allowed = ROUTES[route] ?? [];
    if (!allowed.includes(req.method ?? "")) throw notAllowed(req.method, route, allowed);
    if (route === "/health") {
      this.loaded();
      return sendJson(res, 200, { status: "ok" });
    }
    this.guard.checkKey(req);
    if (route === "/metrics") {
      res.writeHead(200, { "content-type": this.metrics.registry.contentType });
      return void res.end(await this.metrics.registry.metrics());
    }
    if (route === "/v1/models") return sendJson(res, 200, { object: "list", data: [this.model()] });
    if (route === "/v1/models/{id}") {
      const id = decodeURIComponent(path.slice("/v1/models/".length));
      if (id !== this.modelId) throw ApiError.modelNotFound(id);
      return sendJson(res, 200, this.model());
    }
    await this.generation(route, req, res, log, gone);
  }

  private async generation(
    route: string,
    req: IncomingMessage,
    res: ServerResponse,
    log: Partial<RequestLog>,
    gone: AbortSignal,
  ): Promise<void> {
    this.guard.checkJson(req);
    const body = await readJson(req, this.options.maxBodyBytes ?? 4 << 20);
    const ctx = this.loaded();
    const r = route === "/v1/chat/completions" ? parseChat(body) : parseCompletion(body);
    if (r.model !== undefined && r.model !== this.modelId) throw ApiError.modelNotFound(r.model);
    log.stream = r.stream;
    Object.assign(log, await complete(ctx, r, res, gone));
  }
}

/**
 * Starts the API for `device` (or a device still loading: /health says 503
 * until it is ready). Resolves once listening.
 */
export async function serveOpenAi(
  device: PdDevice | Promise<PdDevice>,
  options: ServeOptions = {},
): Promise<OpenAiServer> {
  const api = new OpenAiHttp(device, options);
  const server = createServer(api.onRequest);
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const a = server.address();
  const port = typeof a === "object" && a ? a.port : 0;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/v1`,
    ready: api.ready,
    events: api.events,
    get chatTemplate() {
      return api.ctx?.template.source;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
