/**
 * `pdd device serve`: the OpenAI-compatible API in front of the reference
 * device (reference-device/openai-server.ts). It listens at once (GET /health
 * says 503 until the model is loaded), prints one JSON line with its URL when
 * ready, and writes one JSON line per request on stderr.
 */
import { CLOUD_FLAGS, clientOptions, emulation } from "./device-flags.js";
import { intFlag, parseFlags, readFileFlag, UsageError, type Io, type Run } from "./kit.js";
import { ErrorCode, PddError } from "../proto/index.js";
import {
  type ConnectFailure,
  DEFAULT_TARGET_TPOT_MS,
  PdDevice,
  serveOpenAi,
  type DeviceOptions,
  type ServeOptions,
} from "../reference-device/index.js";

/** The API key: the flag (visible in ps) or $PDD_SERVE_API_KEY (not). */
export const API_KEY_ENV = "PDD_SERVE_API_KEY";

const list = (v: string | undefined) =>
  v === undefined
    ? undefined
    : v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);

export const SERVE_FLAGS = {
  ...CLOUD_FLAGS,
  model: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  "no-kv": { type: "boolean" },
  threads: { type: "string" },
  parallel: { type: "string" },
  queue: { type: "string" },
  "tpot-ms": { type: "string" },
  alias: { type: "string" },
  "api-key": { type: "string" },
  "allowed-hosts": { type: "string" },
  "cors-origin": { type: "string" },
  "max-body-bytes": { type: "string" },
  "chat-template-file": { type: "string" },
  "no-fallback": { type: "boolean" },
} as const;

function flags(argv: string[]) {
  const { values } = parseFlags(argv, SERVE_FLAGS);
  const apiKey = values["api-key"] ?? process.env[API_KEY_ENV];
  if (apiKey !== undefined && apiKey.length < 8)
    throw new UsageError(`the API key (--api-key or $${API_KEY_ENV}) must have at least 8 characters`);
  if (values.alias !== undefined && !/^[\w.:/-]{1,128}$/.test(values.alias))
    throw new UsageError("--alias must be 1-128 letters, digits or . _ : / -");
  if (values["chat-template-file"] !== undefined) readFileFlag("chat-template-file", values["chat-template-file"]);
  if (values["no-fallback"] && !values.cloud) throw new UsageError("--no-fallback needs --cloud URL");
  const parallel = intFlag("parallel", values.parallel, 4, 1, 64);
  const serve: ServeOptions = {
    host: values.host,
    port: intFlag("port", values.port, 8080, 0, 65_535),
    alias: values.alias,
    apiKey,
    allowedHosts: list(values["allowed-hosts"]),
    corsOrigins: list(values["cors-origin"]),
    parallel,
    queue: intFlag("queue", values.queue, 8, 0, 10_000),
    maxBodyBytes: intFlag("max-body-bytes", values["max-body-bytes"], 4 << 20, 1024, 1 << 30),
    streamTpotMs: intFlag("tpot-ms", values["tpot-ms"], DEFAULT_TARGET_TPOT_MS, 0, 60_000),
    chatTemplateFile: values["chat-template-file"],
  };
  const device: DeviceOptions = {
    modelPath: values.model,
    cloud: values.cloud,
    client: clientOptions(values),
    emulate: emulation(values),
    useKv: !values["no-kv"],
    threads: values.threads ? intFlag("threads", values.threads, 1, 1, 256) : undefined,
    // At least the reference cloud's 4: KV images import only between contexts with the same sequence count.
    sequences: Math.max(4, parallel),
    fallback: !values["no-fallback"],
  };
  return { serve, device };
}

/**
 * Tries the cloud once before saying it is ready (issue 16: a cloud that was
 * down went unsaid until a request's log line). Unreachable: one line for a
 * person and one JSON log line on stderr, naming the cause, and serving goes
 * on with the device alone; with --no-fallback it does not start (exit 1).
 */
async function cloudAtStartup(device: PdDevice, noFallback: boolean, io: Io): Promise<ConnectFailure | undefined> {
  const failure = await device.probeCloud();
  if (!failure) return undefined;
  const level = noFallback ? "error" : "warn";
  io.error(
    JSON.stringify({
      time: new Date().toISOString(),
      level,
      msg: "cloud unreachable",
      cause: failure.cause,
      error: failure.message,
    }),
  );
  if (noFallback)
    throw new PddError(ErrorCode.UNAVAILABLE, `cannot use the cloud, ${failure.message}; not starting (--no-fallback)`);
  io.error(
    `pdd device serve: cannot use the cloud, ${failure.message}; requests are answered on the device alone until it is usable`,
  );
  return failure;
}

export const runDeviceServe: Run = async (argv, io: Io) => {
  const { serve, device: deviceOptions } = flags(argv);
  const device = PdDevice.create(deviceOptions);
  const server = await serveOpenAi(device, { ...serve, log: (line) => io.error(line) }).catch(async (e: unknown) => {
    await (await device.catch(() => undefined))?.close();
    throw e;
  });
  let cloudError: ConnectFailure | undefined;
  try {
    await server.ready;
    cloudError = await cloudAtStartup(await device, deviceOptions.fallback === false, io);
  } catch (e) {
    await server.close();
    await (await device.catch(() => undefined))?.close();
    throw e;
  }
  io.log(
    JSON.stringify({
      openai: server.url,
      cloud: deviceOptions.cloud ?? null,
      cloudError: cloudError ?? null,
      model: serve.alias ?? "pdd-device",
      chatTemplate: server.chatTemplate,
      parallel: serve.parallel,
      apiKey: serve.apiKey !== undefined,
    }),
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await server.close();
  await (await device).close();
  return 0;
};
