/** Runs cases against a peer under test, each on a fresh connection, each with a timeout. */
import type { Case, CaseResult, DeviceOutcome, Target } from "./case.js";
import { CLOUD_CASES } from "./cloud-cases.js";
import { MORE_CLOUD_CASES } from "./cloud-more-cases.js";
import { CLOUD_1_1_CASES } from "./cloud-1-1-cases.js";
import { CLOUD_1_1_CONN_CASES } from "./cloud-1-1-conn-cases.js";
import { CLOUD_1_1_KV_CASES } from "./cloud-1-1-kv-cases.js";
import { CLOUD_1_2_CASES } from "./cloud-1-2-cases.js";
import { CLOUD_TOK_CASES } from "./cloud-tok-cases.js";
import { DEVICE_CASES } from "./device-cases.js";
import { DEVICE_1_1_CASES } from "./device-1-1-cases.js";
import { DEVICE_1_1_CONN_CASES } from "./device-1-1-conn-cases.js";
import { DEVICE_1_1_KV_CASES } from "./device-1-1-kv-cases.js";
import { DEVICE_1_2_CASES } from "./device-1-2-cases.js";
import { DEVICE_END_CASES } from "./device-end-cases.js";
import { DEVICE_KV_CASES } from "./device-kv-cases.js";
import { DEVICE_TOKEN_CASES } from "./device-token-cases.js";
import type { ModelOracle } from "./oracle.js";
import { type AcceptedSession, listen } from "./raw-server.js";
import { createSelfSignedCertificate } from "../transports/index.js";
import { CheckFailure, NotOffered, Probe } from "./probe.js";
import { grpcRawCall, grpcResponseHeaders, openGrpc, openWebSocket, openWebTransport } from "./raw-client.js";
import { reachCloud, TargetUnreachable } from "./reach.js";
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
  /** Each result as its case ends: the how-manieth of how many. */
  onResult?: (r: CaseResult, done: number, total: number) => void;
  /** How long the reachability check waits for the connection and for an answer to its Hello, ms (default 15000). */
  reachTimeoutMs?: number;
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
  const cloudCases = [
    ...CLOUD_CASES,
    ...MORE_CLOUD_CASES,
    ...CLOUD_1_1_CASES,
    ...CLOUD_1_1_CONN_CASES,
    ...CLOUD_1_1_KV_CASES,
    ...CLOUD_1_2_CASES,
    ...CLOUD_TOK_CASES,
  ];
  const total = codecs.reduce((n, codec) => n + selectCases(cloudCases, transport, codec, o.filter).length, 0);
  let reached = false;
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
              noControl: x.noControl,
            });
    };
    const target: Target = { url: o.target, transport, codec, token: o.token, raw };
    if (transport === "grpc") {
      target.grpcHeaders = (frame, acceptEncoding) =>
        grpcResponseHeaders(o.target, frame, { ca: o.ca, token: o.token, acceptEncoding });
      target.grpcCall = (frame, call) => grpcRawCall(o.target, frame, { ca: o.ca, token: o.token, ...call });
    }
    // Once, before any case: a target that cannot be reached is said once, not as a FAIL per case.
    if (!reached) await reachCloud(() => raw({}), codec, transport, o.reachTimeoutMs);
    reached = true;
    const open = async (): Promise<Probe> => {
      const probe = new Probe(await raw({}), codec, waitMs);
      probe.transport = transport;
      return probe;
    };
    for (const c of selectCases(cloudCases, transport, codec, o.filter)) {
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
      o.onResult?.(r, results.length, total);
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
    if (e instanceof TargetUnreachable) throw e;
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
  /** Each result as its case ends: the how-manieth of how many. */
  onResult?: (r: CaseResult, done: number, total: number) => void;
  /** The suite's own engine on the device's model (--model): the device's answers are checked against it. */
  oracle?: ModelOracle;
  /** Called once the suite listens, with the URL devices connect to (the port chosen when it was 0). */
  onListening?: (url: string) => void;
}

/**
 * The device's connection. One that exits first or does not connect within
 * `connectMs` fails the case, or, when no device has connected yet (`first`),
 * stops the run (TargetUnreachable): every case would fail the same way.
 */
async function acceptDevice(
  server: { accept(ms: number): Promise<AcceptedSession | undefined> },
  connectMs: number,
  outcome: Promise<DeviceOutcome> | undefined,
  first: boolean,
): Promise<AcceptedSession> {
  // Without a launcher (--listen alone) only the connection can end the wait: a race with
  // `undefined` would settle at once, before any device could connect.
  const exited = outcome?.then((out): never => {
    const observed = `it exited with ${out.exitCode} first: ${out.stderr.slice(-400)}`;
    if (first) throw new TargetUnreachable(`the device never connected: ${observed}`, "exited");
    throw new CheckFailure("the device to connect", observed);
  });
  const session = await (exited ? Promise.race([server.accept(connectMs), exited]) : server.accept(connectMs));
  if (session) return session;
  if (first) throw new TargetUnreachable(`the device never connected: no connection within ${connectMs} ms`, "timeout");
  throw new CheckFailure("the device to connect", `no connection within ${connectMs} ms`);
}

/** A launched device run's outcome, or a failure once it has run for `ms`; nothing without a launcher. */
function runOutcome(launched: Promise<DeviceOutcome> | undefined, ms: number): Promise<DeviceOutcome | undefined> {
  if (!launched) return Promise.resolve(undefined);
  return Promise.race([
    launched,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new CheckFailure("the device run to end", `still running after ${ms} ms`)), ms).unref(),
    ),
  ]);
}

const ALL_DEVICE_CASES = [
  ...DEVICE_CASES,
  ...DEVICE_END_CASES,
  ...DEVICE_TOKEN_CASES,
  ...DEVICE_KV_CASES,
  ...DEVICE_1_1_CASES,
  ...DEVICE_1_1_CONN_CASES,
  ...DEVICE_1_1_KV_CASES,
  ...DEVICE_1_2_CASES,
];

export async function runDeviceConformance(o: DeviceRunOptions): Promise<CaseResult[]> {
  const transport = transportOf(o.listen);
  if (transport === "grpc" && o.codecs?.includes("msgpack"))
    throw new TargetError("the gRPC binding carries only the proto codec (spec §9.1)");
  const tls = transport === "webtransport" ? await createSelfSignedCertificate() : undefined;
  const server = await listen({ url: o.listen, tls });
  o.onListening?.(server.url);
  const waitMs = o.waitMs ?? 5000;
  const connectMs = o.connectMs ?? 30_000;
  const codecs: (Codec | undefined)[] = o.launcher
    ? (o.codecs ?? (transport === "grpc" ? ["proto"] : ["proto", "msgpack"]))
    : [undefined];
  const results: CaseResult[] = [];
  /** Until a device has connected once, one that does not connect stops the run (TargetUnreachable). */
  let neverConnected = true;
  const casesFor = (wanted: Codec | undefined) => selectCases(ALL_DEVICE_CASES, transport, wanted ?? "proto", o.filter);
  const total = codecs.reduce((n, wanted) => n + casesFor(wanted).length, 0);
  try {
    for (const wanted of codecs) {
      for (const c of casesFor(wanted)) {
        const probes: Probe[] = [];
        const stops: (() => void)[] = [];
        let codec: Codec = wanted ?? "proto";
        /** The last run's end: the next run starts after it (one device process at a time, README). */
        let previous: Promise<unknown> | undefined;
        /** One device run: start it (or wait for it) and take its connection. */
        const runDevice = async () => {
          await previous?.catch(() => undefined);
          const launched = o.launcher?.start({
            url: server.url,
            codec: wanted ?? "proto",
            caPem: tls?.cert,
            certSha256: tls ? Buffer.from(certificateSha256(tls.cert)).toString("hex") : undefined,
          });
          if (launched) stops.push(launched.stop);
          const session = await acceptDevice(server, connectMs, launched?.outcome, neverConnected);
          neverConnected = false;
          if (wanted && session.codec !== wanted)
            throw new CheckFailure(`a connection with the ${wanted} codec`, session.codec);
          codec = session.codec;
          const probe = new Probe(session, session.codec, waitMs, "cloud");
          probe.transport = transport;
          probes.push(probe);
          let done: Promise<DeviceOutcome | undefined> | undefined;
          const outcome = () => (done ??= runOutcome(launched?.outcome, waitMs * 3));
          previous = launched?.outcome;
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
                oracle: o.oracle,
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
        o.onResult?.(r, results.length, total);
      }
    }
  } finally {
    await server.close();
  }
  return results;
}
