/**
 * The reference cloud as the peer under attack: `pdd cloud` in a child
 * process (so its RSS, its exit and its signals are its own), on every
 * transport at once, with Prometheus metrics on a free port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ensureDefaultModel } from "../../engine/index.js";
import { certificateSha256 } from "../../transports/index.js";
import { rssOf } from "./proc.js";
import { pollUntil } from "./wait.js";

export const PDD_BIN = resolve(import.meta.dirname, "../../bin/pdd.js");
const HEAP_PROBE = pathToFileURL(resolve(import.meta.dirname, "heap-probe.mjs")).href;

/** Every peer process a case started and has not seen exit: killed when the test process exits, however it ends. */
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});
/** Tracks a child so that it never outlives the test process (a pinned cloud ignores SIGTERM for minutes). */
export function ownChild(c: ChildProcess): ChildProcess {
  live.add(c);
  c.once("exit", () => live.delete(c));
  return c;
}

export interface CloudOptions {
  sequences?: number;
  /** Contents of the keys file (one key per line, optionally "key max_concurrent"). */
  keys?: string;
  /** Settings for --config (limits, drainSeconds, ...). */
  config?: Record<string, unknown>;
  logLevel?: "debug" | "info" | "warn";
  /** A certificate for every listener (wss://, grpcs://, and WebTransport's): for clients that trust a PEM. */
  tls?: { cert: string; key: string };
}

/** What the cloud's metrics say it holds. */
export interface Held {
  /** pdd_sequences_active: the admission count. */
  sequences: number;
  /** pdd_engine_sequences_busy: engine occupancy, apart from admission. */
  engineBusy: number;
  /** pdd_queue_depth: requests waiting for admission. */
  queued: number;
  /** pdd_connections: connections the cloud serves (those past the transport's accept). */
  connections: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
}

export class CloudProcess {
  readonly lines: string[] = [];
  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    readonly urls: { ws: string; grpc: string; webtransport: string; metrics: string },
    readonly certSha256: Uint8Array,
    /** Resolves when the process exits; `ms` counts from the last SIGTERM/SIGINT. */
    readonly exited: Promise<Exit>,
    private readonly stopClock: { at: number },
  ) {}

  static async start(o: CloudOptions = {}): Promise<CloudProcess> {
    const dir = mkdtempSync(join(tmpdir(), "pdd-hostile-cloud-"));
    // The heap probe answers SIGUSR2 with the memory held after a full collection (heap-probe.mjs).
    const args = ["--expose-gc", "--import", HEAP_PROBE, PDD_BIN, "cloud", "--model", ensureDefaultModel("tiny")];
    args.push("--threads", "1");
    args.push("--ws", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--webtransport", "127.0.0.1:0", "--metrics-port", "0");
    args.push("--log-level", o.logLevel ?? "info", "--sequences", String(o.sequences ?? 4));
    if (o.keys !== undefined) {
      writeFileSync(join(dir, "keys"), o.keys);
      args.push("--keys", join(dir, "keys"));
    }
    if (o.tls) {
      writeFileSync(join(dir, "cert.pem"), o.tls.cert);
      writeFileSync(join(dir, "key.pem"), o.tls.key);
      args.push("--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem"));
    }
    // A short drain by default: a test's cloud stops in seconds unless the case is about the drain.
    writeFileSync(join(dir, "config.json"), JSON.stringify({ drainSeconds: 1, ...o.config }));
    args.push("--config", join(dir, "config.json"));
    // glibc's malloc raises its mmap threshold after large frees and then keeps freed memory: after 5a over ws
    // (six 3.9 MB frames read and freed) RSS stayed 19-22 MiB up, at the edge of its 10 %, with the collected
    // heap back. A fixed threshold returns freed large blocks, so RSS shows what the cloud holds; a leak still
    // shows, since leaked memory is never freed.
    const env = {
      ...process.env,
      GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072",
    };
    const child = ownChild(spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env }));
    const lines: string[] = [];
    let stdout = "";
    let cloud: CloudProcess | undefined;
    const stopClock = { at: 0 };
    const exited = new Promise<Exit>((r) =>
      child.once("exit", (code, signal) =>
        r({ code, signal, ms: stopClock.at ? performance.now() - stopClock.at : 0 }),
      ),
    );
    const listening = new Promise<{ listening: CloudProcess["urls"]; webtransportCertSha256: string }>(
      (resolveUrls, reject) => {
        child.stdout!.on("data", (b: Buffer) => {
          stdout += b.toString();
          const nl = stdout.indexOf("\n");
          if (nl >= 0) resolveUrls(JSON.parse(stdout.slice(0, nl)));
        });
        void exited.then((e) =>
          reject(
            new Error(`pdd cloud exited (${e.code ?? e.signal}) before listening: ${lines.slice(-3).join(" | ")}`),
          ),
        );
      },
    );
    let partial = "";
    child.stderr!.on("data", (b: Buffer) => {
      partial += b.toString();
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      (cloud?.lines ?? lines).push(...parts);
    });
    const info = await listening;
    // With a configured certificate the CLI prints no hash: it is the certificate's own.
    const hash = o.tls ? certificateSha256(o.tls.cert) : Buffer.from(info.webtransportCertSha256, "hex");
    cloud = new CloudProcess(child, dir, info.listening, hash, exited, stopClock);
    cloud.lines.push(...lines);
    return cloud;
  }

  get pid(): number {
    return this.child.pid!;
  }

  rss(): number {
    return rssOf(this.pid);
  }

  /**
   * Bytes the cloud holds after a full garbage collection: V8's heap in use
   * plus memory outside it that JS objects own (Buffers, ArrayBuffers); what a
   * leak of JS objects or buffers grows and allocator retention does not.
   */
  async heldAfterGc(deadlineMs = 10_000): Promise<number> {
    const from = this.lines.length;
    this.child.kill("SIGUSR2");
    const line = await this.waitForLog(/^\{"heapProbe"/, deadlineMs, from);
    if (!line) throw new Error(`the cloud (pid ${this.pid}) did not answer its heap probe within ${deadlineMs} ms`);
    const p = (JSON.parse(line) as { heapProbe: { heapUsed: number; external: number } }).heapProbe;
    return p.heapUsed + p.external;
  }

  /** Every sample of the cloud's Prometheus text, by series (`name{labels}`). */
  async metrics(): Promise<Map<string, number>> {
    const text = await this.fetchMetrics();
    const out = new Map<string, number>();
    for (const line of text.split("\n")) {
      if (line.startsWith("#") || line.trim() === "") continue;
      const i = line.lastIndexOf(" ");
      out.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
    return out;
  }

  /**
   * The metrics text; when the cloud cannot be reached, the failure says whether its process exited (its
   * code or signal, and its last log lines): a CI run once saw ECONNREFUSED here with nothing else to go on.
   */
  private async fetchMetrics(): Promise<string> {
    try {
      return await (await fetch(this.urls.metrics)).text();
    } catch (e) {
      const gone = this.child.exitCode !== null || this.child.signalCode !== null;
      const state = gone ? `exited (${this.child.exitCode ?? this.child.signalCode})` : "still running";
      throw new Error(
        `the cloud's metrics are unreachable (${(e as Error).cause ?? (e as Error).message}); pid ${this.pid} ${state}; ` +
          `its last log lines: ${this.lines.slice(-5).join(" | ")}`,
        { cause: e },
      );
    }
  }

  /** Throws when the cloud does not export one of the series: a missing count is not a count of 0. */
  async held(): Promise<Held> {
    const m = await this.metrics();
    const need = (name: string): number => {
      const v = m.get(name);
      if (v === undefined) throw new Error(`the cloud (pid ${this.pid}) exports no ${name}`);
      return v;
    };
    return {
      sequences: need("pdd_sequences_active"),
      queued: need("pdd_queue_depth"),
      engineBusy: need("pdd_engine_sequences_busy"),
      connections: need("pdd_connections"),
    };
  }

  /** Waits until nothing is held (no admission slot, no queued request, no engine sequence); returns what was held at the end. */
  waitIdle(deadlineMs: number): Promise<{ value: Held; ok: boolean; ms: number }> {
    return pollUntil(
      () => this.held(),
      (h) => h.sequences === 0 && h.queued === 0 && h.engineBusy === 0,
      deadlineMs,
      100,
    );
  }

  /** Waits for a log line matching `re` (the cloud logs JSON lines on stderr). */
  async waitForLog(re: RegExp, deadlineMs: number, from = 0): Promise<string | undefined> {
    const r = await pollUntil(
      () => this.lines.slice(from).find((l) => re.test(l)),
      (l) => l !== undefined,
      deadlineMs,
      25,
    );
    return r.value;
  }

  writeKeys(contents: string): void {
    writeFileSync(join(this.dir, "keys"), contents);
  }

  signal(sig: NodeJS.Signals): void {
    if (sig === "SIGTERM" || sig === "SIGINT") this.stopClock.at = performance.now();
    this.child.kill(sig);
  }

  /** Stops the cloud: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<Exit> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}
