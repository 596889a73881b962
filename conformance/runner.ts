/** Runs cases against a peer under test, each on a fresh connection, each with a timeout. */
import type { Case, CaseResult } from "./case.js";
import { CLOUD_CASES } from "./cloud-cases.js";
import { CheckFailure, NotOffered, Probe } from "./probe.js";
import { openGrpc, openWebSocket, openWebTransport, type RawSession } from "./raw-client.js";
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
  /** Only cases whose id contains this text. */
  filter?: string;
  onResult?: (r: CaseResult) => void;
}

export class TargetError extends Error {}

function transportOf(target: string): "websocket" | "grpc" | "webtransport" {
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
  if (transport === "grpc" && codecs.includes("msgpack")) throw new TargetError("the gRPC binding carries only the proto codec (spec §9.1)");
  const waitMs = o.waitMs ?? 5000;
  const cases: Case[] = CLOUD_CASES.filter((c) => !o.filter || o.filter.split(",").some((f) => c.id.includes(f)));
  const results: CaseResult[] = [];
  for (const codec of codecs) {
    const open = async (): Promise<Probe> => {
      const s: RawSession =
        transport === "websocket"
          ? await openWebSocket(o.target, codec, o)
          : transport === "grpc"
            ? await openGrpc(o.target, o)
            : await openWebTransport(o.target, codec, { certHash: o.certHash ?? (o.ca ? certificateSha256(o.ca) : undefined), token: o.token });
      return new Probe(s, codec, waitMs);
    };
    for (const c of cases) {
      if (c.codecs && !c.codecs.includes(codec)) continue;
      const t0 = performance.now();
      let probe: Probe | undefined;
      const opened: Probe[] = [];
      let status: CaseResult["status"] = "pass";
      let details = "";
      try {
        probe = await open();
        const env = {
          open: async () => {
            const p = await open();
            opened.push(p);
            return p;
          },
        };
        await Promise.race([
          c.run(probe, env),
          new Promise((_, reject) => setTimeout(() => reject(new CheckFailure("the case to finish within 30 s", "a timeout")), 30_000).unref()),
        ]);
      } catch (e) {
        if (e instanceof NotOffered) {
          status = "not-offered";
          details = e.message;
        } else {
          status = "fail";
          details = e instanceof CheckFailure ? `expected ${e.expected}; observed ${e.observed}` : `error: ${(e as Error).message}`;
        }
      } finally {
        probe?.close();
        for (const p of opened) p.close();
      }
      const log = [probe, ...opened].flatMap((p) => p?.log ?? []);
      const r: CaseResult = { id: c.id, title: c.title, requirements: c.requirements, transport, codec, status, details, ms: Math.round(performance.now() - t0), log };
      results.push(r);
      o.onResult?.(r);
    }
  }
  return results;
}
