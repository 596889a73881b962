/** `pdd cloud`: runs the reference cloud until SIGINT/SIGTERM; SIGHUP reloads the keys file. */
import { choiceFlag, intFlag, numberFlag, parseFlags, readFileFlag, UsageError, type Io, type Run } from "./kit.js";
import { loadCloudConfigFile, startCloud, type CloudConfigInput, type CloudPeer } from "../reference-cloud/index.js";

const CLOUD_FLAGS = {
  model: { type: "string" },
  config: { type: "string" },
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
} as const;

type CloudFlags = ReturnType<typeof parseFlags<typeof CLOUD_FLAGS>>["values"];

export const runCloud: Run = async (argv, io) => {
  const { values } = parseFlags(argv, CLOUD_FLAGS);
  const cloud = await startOrReport(cloudInput(values), io);
  if (!cloud) return 1;
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

/** The config file (--config), with each flag given on the command line over it. */
function cloudInput(values: CloudFlags): CloudConfigInput {
  let cfg: CloudConfigInput = {};
  try {
    if (values.config) cfg = loadCloudConfigFile(values.config);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined))
    throw new UsageError("--tls-cert and --tls-key go together");
  const input: CloudConfigInput = {
    ...cfg,
    listen: listenFlags(values, cfg.listen),
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
    ...(values["log-level"] ? { logLevel: choiceFlag("log-level", values["log-level"], LOG_LEVELS, "info") } : {}),
  };
  if (values["max-budget"])
    input.limits = {
      ...(cfg.limits ?? {}),
      maxCloudTokenBudget: intFlag("max-budget", values["max-budget"], 256, 1, 1 << 20),
    };
  return input;
}

const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;

/** The default listeners, then the config file's, then --ws/--grpc/--webtransport; --no-X removes one. */
function listenFlags(values: CloudFlags, fromFile: CloudConfigInput["listen"]): Record<string, string | undefined> {
  const listen: Record<string, string | undefined> = {
    ws: "127.0.0.1:4100",
    grpc: "127.0.0.1:4101",
    webtransport: "127.0.0.1:4102",
    ...(fromFile ?? {}),
  };
  if (values.ws) listen.ws = values.ws;
  if (values.grpc) listen.grpc = values.grpc;
  if (values.webtransport) listen.webtransport = values.webtransport;
  if (values["no-ws"]) delete listen.ws;
  if (values["no-grpc"]) delete listen.grpc;
  if (values["no-webtransport"]) delete listen.webtransport;
  return listen;
}

/** Starts the cloud; a bad config, keys file or model is one line on stderr (exit 1), anything else is a bug. */
async function startOrReport(input: CloudConfigInput, io: Io): Promise<CloudPeer | undefined> {
  try {
    return await startCloud(input);
  } catch (e) {
    const msg = (e as Error).message;
    if (
      /^config|expected|keys|cannot|not a usable|cannot load/.test(msg) ||
      (e as { code?: unknown }).code !== undefined
    ) {
      io.error(`pdd cloud: ${msg}`);
      return undefined;
    }
    throw e;
  }
}
