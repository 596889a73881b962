/** Runs cases against a peer under test, each on a fresh connection, each with a timeout. */
import type { Case, CaseResult, DeviceOutcome, Target } from "./case.js";
import { CLOUD_CASES } from "./cloud-cases.js";
import { MORE_CLOUD_CASES } from "./cloud-more-cases.js";
import { DEVICE_CASES } from "./device-cases.js";
import { listen } from "./raw-server.js";
import { createSelfSignedCertificate } from "../transports/index.js";
import { CheckFailure, NotOffered, Probe } from "./probe.js";
import { grpcResponseHeaders, openGrpc, openWebSocket, openWebTransport } from "./raw-client.js";
import type { Codec } from "./wire.js";
import { createHash, X509Certificate } from "node:crypto";

function certificateSha256(pem: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(new X509Certificate(pem).raw).digest());
}

export interface RunOptions {
  role: "cloud";
  /** The cloud under test: ws://, wss://, grpc:// or grpcs://. */
  target: string;
  /** Codecs to test; default: all the target's transport carries (gRPC: proto). */
  codecs?: Codec[];
  ca?: string;
  token?: string;
  /** WebTransport: SHA-256 of the server certificate to trust (else derived from `ca`). */
  certHash?: Uint8Array;
  /** Per-frame wait, ms (default 5000); each case also has a 30 s budget. */
  waitMs?: number;
  /** Only cases whose id contains one of these comma-separated texts. */
  filter?: string;
  /** The cloud's GGUF file, to check the fingerprints it announces (Appendix B). */
  modelFile?: string;
  onResult?: (r: CaseResult) => void;
}

export class TargetError extends Error {}

type Transport = "websocket" | "grpc" | "webtransport";

function transportOf(target: string): Transport {
  let scheme: string;
  try {
    scheme = new URL(target).protocol;
  } catch {
    throw new TargetError(`"${target}" is not a URL`);
  }
  if (scheme === "ws:" || scheme === "wss:") return "websocket";
  if (scheme === "grpc:" || scheme === "grpcs:") return "grpc";
  if (scheme === "https:") return "webtransport";
  throw new TargetError(`unsupported scheme ${scheme}// (use ws, wss, grpc, grpcs or https for WebTransport)`);
}

export async function runConformance(o: RunOptions): Promise<CaseResult[]> {
  const transport = transportOf(o.target);
  const codecs = o.codecs ?? (transport === "grpc" ? ["proto"] : ["proto", "msgpack"]);
  if (transport === "grpc" && codecs.includes("msgpack"))
    throw new TargetError("the gRPC binding carries only the proto codec (spec §9.1)");
  const waitMs = o.waitMs ?? 5000;
  const results: CaseResult[] = [];
  for (const codec of codecs) {
    const raw: Target["raw"] = (x) => {
      const token = x.token === null ? undefined : (x.token ?? o.token);
      return transport === "websocket"
        ? openWebSocket(o.target, codec, { ca: o.ca, token, protocols: x.protocols })
        : transport === "grpc"
          ? openGrpc(o.target, { ca: o.ca, token })
          : openWebTransport(o.target, codec, {
              certHash: o.certHash ?? (o.ca ? certificateSha256(o.ca) : undefined),
              token,
              codecParam: x.codecParam,
            });
    };
    const target: Target = { url: o.target, transport, codec, token: o.token, raw };
    if (transport === "grpc")
      target.grpcHeaders = (frame, acceptEncoding) =>
        grpcResponseHeaders(o.target, frame, { ca: o.ca, token: o.token, acceptEncoding });
    const open = async (): Promise<Probe> => {
      const probe = new Probe(await raw({}), codec, waitMs);
      probe.transport = transport;
      return probe;
    };
    for (const c of selectCases([...CLOUD_CASES, ...MORE_CLOUD_CASES], transport, codec, o.filter)) {
      const opened: Probe[] = [];
      const openOne = async () => {
        const p = await open();
        opened.push(p);
        return p;
      };
      const unsupported = () => Promise.reject(new Error("a device-role helper in a cloud case"));
      const r = await runCase(c, transport, codec, opened, async () =>
        c.run(await openOne(), {
          open: openOne,
          target,
          modelFile: o.modelFile,
          outcome: unsupported,
          again: unsupported,
        }),
      );
      results.push(r);
      o.onResult?.(r);
    }
  }
  return results;
}

function selectCases(cases: Case[], transport: Transport, codec: Codec, filter: string | undefined): Case[] {
  return cases.filter(
    (c) =>
      (!filter || filter.split(",").some((f) => c.id.includes(f))) &&
      (!c.codecs || c.codecs.includes(codec)) &&
      (!c.transports || c.transports.includes(transport)),
  );
}

/** Runs one case with its 30 s budget and turns what happened into a result with the frame log. */
async function runCase(
  c: Case,
  transport: Transport,
  codec: Codec,
  probes: Probe[],
  body: () => Promise<void>,
  answerObserved = true,
): Promise<CaseResult> {
  const t0 = performance.now();
  let status: CaseResult["status"] = "pass";
  let details = "";
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      body(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new CheckFailure("the case to finish within 30 s", "a timeout")),
          CASE_BUDGET_MS,
        );
      }),
    ]);
    if (c.answer && !answerObserved) {
      status = "wire-only";
      details = "the frames were checked; the displayed answer is observable with --exec only";
    }
  } catch (e) {
    if (e instanceof NotOffered) {
      status = "not-offered";
      details = e.message;
    } else {
      status = "fail";
      details =
        e instanceof CheckFailure ? `expected ${e.expected}; observed ${e.observed}` : `error: ${(e as Error).message}`;
    }
  } finally {
    clearTimeout(timer);
    for (const p of probes) p.close();
  }
  return {
    id: c.id,
    title: c.title,
    requirements: c.requirements,
    transport,
    codec,
    status,
    details,
    ms: Math.round(performance.now() - t0),
    log: probes.flatMap((p) => p.log),
  };
}

const CASE_BUDGET_MS = 30_000;

/** Starts the device under test, once per case (and again for a baseline). */
export interface DeviceLauncher {
  start(o: { url: string; codec: Codec; caPem?: string; certSha256?: string }): {
    outcome: Promise<DeviceOutcome>;
    stop(): void;
  };
}

export interface DeviceRunOptions {
  role: "device";
  /** Where the suite listens: ws://host:port, grpc://host:port or https://host:port/path (WebTransport). */
  listen: string;
  /** How to start the device under test; absent: wait for the device to connect on its own (--listen). */
  launcher?: DeviceLauncher;
  /** Codecs to test (with a launcher); default: all the binding carries. */
  codecs?: Codec[];
  /** Per-frame wait, ms (default 5000). */
  waitMs?: number;
  /** How long to wait for the device to connect, ms (default 30000). */
  connectMs?: number;
  filter?: string;
  /** The device's GGUF file, to check the fingerprints it announces (Appendix B). */
  modelFile?: string;
  onResult?: (r: CaseResult) => void;
}

export async function runDeviceConformance(o: DeviceRunOptions): Promise<CaseResult[]> {
  const transport = transportOf(o.listen);
  if (transport === "grpc" && o.codecs?.includes("msgpack"))
    throw new TargetError("the gRPC binding carries only the proto codec (spec §9.1)");
  const tls = transport === "webtransport" ? await createSelfSignedCertificate() : undefined;
  const server = await listen({ url: o.listen, tls });
  const waitMs = o.waitMs ?? 5000;
  const connectMs = o.connectMs ?? 30_000;
  const codecs: (Codec | undefined)[] = o.launcher
    ? (o.codecs ?? (transport === "grpc" ? ["proto"] : ["proto", "msgpack"]))
    : [undefined];
  const results: CaseResult[] = [];
  try {
    for (const wanted of codecs) {
      for (const c of DEVICE_CASES.filter((x) => selectCases([x], transport, wanted ?? "proto", o.filter).length > 0)) {
        const probes: Probe[] = [];
        const stops: (() => void)[] = [];
        let codec: Codec = wanted ?? "proto";
        /** One device run: start it (or wait for it) and take its connection. */
        const runDevice = async () => {
          const launched = o.launcher?.start({
            url: server.url,
            codec: wanted ?? "proto",
            caPem: tls?.cert,
            certSha256: tls ? Buffer.from(certificateSha256(tls.cert)).toString("hex") : undefined,
          });
          if (launched) stops.push(launched.stop);
          const session = await Promise.race([
            server.accept(connectMs),
            launched?.outcome.then((out) => {
              throw new CheckFailure(
                "the device to connect",
                `it exited with ${out.exitCode} first: ${out.stderr.slice(-400)}`,
              );
            }),
          ]);
          if (!session) throw new CheckFailure("the device to connect", `no connection within ${connectMs} ms`);
          if (wanted && session.codec !== wanted)
            throw new CheckFailure(`a connection with the ${wanted} codec`, session.codec);
          codec = session.codec;
          const probe = new Probe(session, session.codec, waitMs, "cloud");
          probe.transport = transport;
          probes.push(probe);
          let done: Promise<DeviceOutcome | undefined> | undefined;
          const outcome = () =>
            (done ??= launched
              ? Promise.race([
                  launched.outcome,
                  new Promise<never>((_, reject) =>
                    setTimeout(
                      () => reject(new CheckFailure("the device run to end", `still running after ${waitMs * 3} ms`)),
                      waitMs * 3,
                    ).unref(),
                  ),
                ])
              : Promise.resolve(undefined));
          return { probe, outcome };
        };
        let r: CaseResult;
        try {
          r = await runCase(
            c,
            transport,
            codec,
            probes,
            async () => {
              const first = await runDevice();
              const cloudOnly = () => Promise.reject(new Error("a cloud-role helper in a device case"));
              await c.run(first.probe, {
                open: cloudOnly,
                target: { url: server.url, transport, codec, raw: cloudOnly },
                modelFile: o.modelFile,
                outcome: first.outcome,
                again: runDevice,
              });
            },
            o.launcher !== undefined,
          );
        } finally {
          for (const stop of stops) stop();
        }
        r.codec = codec;
        results.push(r);
        o.onResult?.(r);
      }
    }
  } finally {
    await server.close();
  }
  return results;
}
