/** `pdd cloud`: runs the reference cloud until SIGINT/SIGTERM; SIGHUP reloads the keys file. */
import { intFlag, numberFlag, parseFlags, readFileFlag, UsageError, type Run } from "./kit.js";
import { backendUrl } from "../engine/index.js";
import { loadCloudConfigFile, startCloud, type CloudConfigInput } from "../reference-cloud/index.js";

/** --engine, --backend and --slot-save-dir: which engine, and llama-server's URLs (checked here: exit 2). */
function engineFlags(values: { engine?: string; backend?: string[]; "slot-save-dir"?: string }): CloudConfigInput {
  const engine = values.engine;
  if (engine !== undefined && engine !== "llama-cpp" && engine !== "llama-server")
    throw new UsageError(`--engine must be llama-cpp or llama-server, not "${engine}"`);
  const backends = values.backend ?? [];
  if (backends.length > 0 && engine !== "llama-server") throw new UsageError("--backend needs --engine llama-server");
  if (engine === "llama-server" && backends.length === 0)
    throw new UsageError("--engine llama-server needs at least one --backend URL");
  if (values["slot-save-dir"] && engine !== "llama-server")
    throw new UsageError("--slot-save-dir needs --engine llama-server");
  for (const b of backends) {
    try {
      backendUrl(b);
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^\[\w+\] /, ""));
    }
  }
  return {
    ...(engine ? { engine } : {}),
    ...(backends.length > 0 ? { backends } : {}),
    ...(values["slot-save-dir"] ? { slotSaveDir: values["slot-save-dir"] } : {}),
  };
}

export const runCloud: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    model: { type: "string" },
    config: { type: "string" },
    engine: { type: "string" },
    backend: { type: "string", multiple: true },
    "slot-save-dir": { type: "string" },
    ws: { type: "string" },
    grpc: { type: "string" },
    webtransport: { type: "string" },
    "no-ws": { type: "boolean" },
    "no-grpc": { type: "boolean" },
    "no-webtransport": { type: "boolean" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    sequences: { type: "string" },
    threads: { type: "string" },
    queue: { type: "string" },
    "max-budget": { type: "string" },
    pace: { type: "string" },
    keys: { type: "string" },
    "metrics-port": { type: "string" },
    "log-level": { type: "string" },
  });
  let cfg: CloudConfigInput = {};
  try {
    if (values.config) cfg = loadCloudConfigFile(values.config);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const listen = {
    ws: "127.0.0.1:4100",
    grpc: "127.0.0.1:4101",
    webtransport: "127.0.0.1:4102",
    ...(cfg.listen ?? {}),
  } as Record<string, string | undefined>;
  if (values.ws) listen.ws = values.ws;
  if (values.grpc) listen.grpc = values.grpc;
  if (values.webtransport) listen.webtransport = values.webtransport;
  if (values["no-ws"]) delete listen.ws;
  if (values["no-grpc"]) delete listen.grpc;
  if (values["no-webtransport"]) delete listen.webtransport;
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined))
    throw new UsageError("--tls-cert and --tls-key go together");
  const input: CloudConfigInput = {
    ...cfg,
    listen,
    ...engineFlags(values),
    ...(values.model ? { model: values.model } : {}),
    ...(values["tls-cert"]
      ? {
          tls: {
            cert: readFileFlag("tls-cert", values["tls-cert"])!,
            key: readFileFlag("tls-key", values["tls-key"])!,
          },
        }
      : {}),
    ...(values.sequences ? { sequences: intFlag("sequences", values.sequences, 4, 1, 256) } : {}),
    ...(values.threads ? { threads: intFlag("threads", values.threads, 1, 1, 256) } : {}),
    ...(values.queue ? { queueLimit: intFlag("queue", values.queue, 64, 0, 100_000) } : {}),
    ...(values.keys ? { keysFile: values.keys } : {}),
    ...(values.pace !== undefined ? { decodePace: numberFlag("pace", values.pace, 2, 0, 100) } : {}),
    ...(values["metrics-port"] ? { metricsPort: intFlag("metrics-port", values["metrics-port"], 0, 0, 65_535) } : {}),
    ...(values["log-level"] ? { logLevel: values["log-level"] as never } : {}),
  };
  if (values["max-budget"])
    input.limits = {
      ...(cfg.limits ?? {}),
      maxCloudTokenBudget: intFlag("max-budget", values["max-budget"], 256, 1, 1 << 20),
    };
  let cloud;
  try {
    cloud = await startCloud(input);
  } catch (e) {
    const msg = (e as Error).message;
    if (
      /^config|expected|keys|cannot|not a usable|cannot load/.test(msg) ||
      (e as { code?: unknown }).code !== undefined
    ) {
      io.error(`pdd cloud: ${msg}`);
      return 1;
    }
    throw e;
  }
  io.log(
    JSON.stringify({
      listening: cloud.urls,
      model: cloud.engine.info.name,
      webtransportCertSha256:
        Buffer.from((cloud.certificate as { sha256?: Uint8Array }).sha256 ?? []).toString("hex") || undefined,
    }),
  );
  process.on("SIGHUP", () => cloud.reloadKeys());
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await cloud.close();
  return 0;
};
