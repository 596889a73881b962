/** `pdd cloud`: runs the reference cloud until SIGINT/SIGTERM; SIGHUP reloads the keys file. */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backendUrl } from "../engine/index.js";
import { certificateSha256 } from "../transports/index.js";
import { choiceFlag, intFlag, numberFlag, parseFlags, readFileFlag, UsageError, type Io, type Run } from "./kit.js";
import { loadCloudConfigFile, startCloud, type CloudConfigInput, type CloudPeer } from "../reference-cloud/index.js";

export const CLOUD_FLAGS = {
  model: { type: "string" },
  config: { type: "string" },
  engine: { type: "string" },
  backend: { type: "string", multiple: true },
  "backend-api": { type: "string" },
  "slot-save-dir": { type: "string" },
  "refine-model": { type: "string" },
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
  "cert-out": { type: "string" },
} as const;

type CloudFlags = ReturnType<typeof parseFlags<typeof CLOUD_FLAGS>>["values"];

/** --engine, --backend, --backend-api, --slot-save-dir, --refine-model: which engine, and llama-server's (checked here: exit 2). */
function engineFlags(values: {
  engine?: string;
  backend?: string[];
  "backend-api"?: string;
  "slot-save-dir"?: string;
  "refine-model"?: string;
}): CloudConfigInput {
  const engine = values.engine;
  if (engine !== undefined && engine !== "llama-cpp" && engine !== "llama-server")
    throw new UsageError(`--engine must be llama-cpp or llama-server, not "${engine}"`);
  const backends = values.backend ?? [];
  if (backends.length > 0 && engine !== "llama-server") throw new UsageError("--backend needs --engine llama-server");
  if (engine === "llama-server" && backends.length === 0)
    throw new UsageError("--engine llama-server needs at least one --backend URL");
  const api = values["backend-api"];
  if (api !== undefined && engine !== "llama-server") throw new UsageError("--backend-api needs --engine llama-server");
  if (api !== undefined && api !== "native" && api !== "openai")
    throw new UsageError(`--backend-api must be native or openai, not "${api}"`);
  if (values["slot-save-dir"] && engine !== "llama-server")
    throw new UsageError("--slot-save-dir needs --engine llama-server");
  if (values["refine-model"] && engine !== "llama-server")
    throw new UsageError("--refine-model needs --engine llama-server");
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
    ...(api ? { backendApi: api } : {}),
    ...(values["slot-save-dir"] ? { slotSaveDir: values["slot-save-dir"] } : {}),
    ...(values["refine-model"] ? { refineModel: values["refine-model"] } : {}),
  };
}

export const runCloud: Run = async (argv, io) => {
  const { values } = parseFlags(argv, CLOUD_FLAGS);
  const cloud = await startOrReport(cloudInput(values), io);
  if (!cloud) return 1;
  let trust = {};
  try {
    if (cloud.urls.webtransport) trust = writeWebTransportCert(cloud, values["cert-out"], io);
  } catch (e) {
    await cloud.close();
    throw e;
  }
  // Before the line that says it is ready: a SIGHUP sent on seeing it must find the handler (not kill the process).
  const reload = () => cloud.reloadKeys();
  process.on("SIGHUP", reload);
  io.log(JSON.stringify({ listening: cloud.urls, model: cloud.engine.info.name, ...trust }));
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  process.off("SIGHUP", reload); // one reload (and one log line) per SIGHUP, however many clouds this process ran
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
  if (!listen.ws && !listen.grpc && !listen.webtransport)
    throw new UsageError("nothing to listen on: --no-ws, --no-grpc and --no-webtransport leave no binding");
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

/**
 * The certificate WebTransport serves, where a device can find it (issue 16:
 * only its hash was printed). A generated one is written to --cert-out, else
 * beside the system's temporary files, named for the port; a configured one
 * is the operator's file already. Devices use `--ca FILE` or `--cert-sha256 HEX`.
 */
function writeWebTransportCert(
  cloud: CloudPeer,
  out: string | undefined,
  io: Io,
): { webtransportCert?: string; webtransportCertSha256: string } {
  const pem = cloud.certificate.cert;
  const sha = Buffer.from(certificateSha256(pem)).toString("hex");
  const generated = "sha256" in cloud.certificate;
  if (!generated && out === undefined) return { webtransportCertSha256: sha };
  const port = new URL(cloud.urls.webtransport!).port;
  const path = out ?? join(tmpdir(), `pdd-cloud-cert-${port}.pem`);
  try {
    writeFileSync(path, pem);
  } catch (e) {
    throw new UsageError(`cannot write --cert-out ${path}: ${(e as Error).message}`);
  }
  io.error(
    `pdd cloud: WebTransport certificate in ${path}; a device trusts it with --ca ${path} or --cert-sha256 ${sha}`,
  );
  return { webtransportCert: path, webtransportCertSha256: sha };
}
