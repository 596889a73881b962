/** The conformance suite's raw sessions (it reads what comes), opened on the attacked cloud's bindings. */
import { openGrpc, openWebSocket, openWebTransport, type RawSession } from "../../conformance/raw-client.js";
import type { CloudProcess } from "./cloud-process.js";
import type { Binding } from "./normal-device.js";

export function rawSession(cloud: CloudProcess, b: Binding, token?: string): Promise<RawSession> {
  if (b.key === "ws") return openWebSocket(cloud.urls.ws, b.codec, { token });
  if (b.key === "grpc") return openGrpc(cloud.urls.grpc, { token });
  return openWebTransport(cloud.urls.webtransport, b.codec, { certHash: cloud.certSha256, token });
}

/** Frames until the session closes (or `ms` of silence); returns them and the close. */
export async function drain(
  s: RawSession,
  ms: number,
): Promise<{ frames: Uint8Array[]; close?: { code: number; reason: string } }> {
  const frames: Uint8Array[] = [];
  for (;;) {
    const v = await s.next(ms);
    if (v === undefined) return { frames };
    if (v instanceof Uint8Array) frames.push(v);
    else return { frames, close: v };
  }
}
