/** `connectWebTransport`: the WebTransport binding's client (spec §10.4). */
import {
  CloudFrameSchema,
  DEFAULT_MAX_FRAME_BYTES,
  DeviceFrameSchema,
  ErrorCode,
  PddError,
  type CloudFrame,
  type DeviceFrame,
} from "../../proto/index.js";
import type { Http2Session } from "node:http2";
import type { ClientOptions, DeviceStream } from "../message-stream.js";
import { pinnableHash, probeSessionStatus, probeTls, trustCaFor } from "./trust.js";
import { loadWebTransport } from "./module.js";
import { WtStream, type WtBidi, type WtSession } from "./stream.js";
import { WT_WINDOWS } from "./windows.js";

export interface WebTransportClientOptions extends ClientOptions {
  /** Use HTTP/3 when available; default false (HTTP/2, always available). */
  preferHttp3?: boolean;
}

/**
 * Opens a PDD connection to an https:// WebTransport URL. The codec goes in
 * the `codec` query parameter and the credential in `access_token`, since a
 * WebTransport client cannot set request headers. The server's certificate is
 * trusted through `serverCertificateHashes` (pinned, at most 14 days valid)
 * or `ca`, a CA as on the other bindings (trust.ts).
 */
type ClientSession = WtSession & {
  createBidirectionalStream(): Promise<WtBidi>;
  /** The library's internals, where the HTTP/2 session for keep-alive lives. */
  sessionint?: { objint?: { stream?: { session?: Http2Session } } };
};

export async function connectWebTransport(url: string, options: WebTransportClientOptions = {}): Promise<DeviceStream> {
  const { wt, http3Available } = await loadWebTransport();
  const codec = options.codec ?? "proto";
  const target = new URL(url);
  target.searchParams.set("codec", codec);
  if (options.authToken) target.searchParams.set("access_token", options.authToken);
  // `ca` is a CA, as on wss:// and grpcs:// (trust.ts), except a self-signed leaf of at most 14 days: that
  // one is pinned by hash as before (it works for any host name). Not both: once Node verifies the chain, it
  // calls the library's hash verifier as checkServerIdentity, whose `true` reads as an error.
  const pinned = options.ca ? pinnableHash(options.ca) : undefined;
  const hashes = options.serverCertificateHashes ?? (pinned ? [pinned] : undefined);
  const untrust =
    options.ca && !hashes
      ? trustCaFor(target.hostname.replace(/^\[(.*)\]$/, "$1"), Number(target.port || 443), options.ca)
      : undefined;
  // Typed by the library as the W3C WebTransportOptions, the constructor also reads its
  // HttpClientInit fields (forceReliable, the flow-control windows): passed as a variable, not a literal.
  const init = {
    forceReliable: !(options.preferHttp3 && http3Available),
    serverCertificateHashes: hashes?.map((value) => ({ algorithm: "sha-256", value })),
    ...WT_WINDOWS,
  };
  // The library types the session by the WebTransport API; ClientSession names what we use, and its internals.
  const session: ClientSession = new wt.WebTransport(target.toString(), init);
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      session.ready,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no session within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    session.closed.catch(() => undefined);
    try {
      session.close();
    } catch {
      // never opened
    }
    let text = String((e as Error)?.message ?? e);
    let code = /\b401\b/.test(text)
      ? ErrorCode.UNAUTHENTICATED
      : /\b400\b/.test(text)
        ? ErrorCode.UNSUPPORTED_CODEC
        : ErrorCode.UNAVAILABLE;
    // The library says only "Opening handshake failed." for a refused TCP connection or an untrusted certificate.
    if (/Opening handshake failed/.test(text)) {
      const why = await probeTls(target.hostname.replace(/^\[(.*)\]$/, "$1"), Number(target.port || 443), {
        ca: options.ca,
        hashes,
      });
      if (why) text = `${text} ${why}`;
      else {
        const status = await probeSessionStatus(target, { ca: options.ca, hashes });
        if (status !== undefined) text = `${text} The server answered the session with HTTP ${status}.`;
        if (status === 401) code = ErrorCode.UNAUTHENTICATED;
        else if (status === 400) code = ErrorCode.UNSUPPORTED_CODEC;
      }
    }
    throw new PddError(code, `WebTransport session to ${url} failed: ${text}`, {
      retryable: code === ErrorCode.UNAVAILABLE,
      cause: e,
    });
  } finally {
    clearTimeout(timer);
    untrust?.();
  }
  let control: WtBidi;
  try {
    control = await session.createBidirectionalStream();
  } catch (e) {
    // Refusals arrive as a session closed with a PDD code (PDD-WT-001/005).
    const info = await Promise.race([session.closed.catch(() => undefined), new Promise((r) => setTimeout(r, 1_000))]);
    const code = ((info as { closeCode?: number } | undefined)?.closeCode ?? ErrorCode.UNAVAILABLE) as ErrorCode;
    throw new PddError(
      code,
      `WebTransport session to ${url} closed: ${(info as { reason?: string } | undefined)?.reason ?? String(e)}`,
      { cause: e },
    );
  }
  return new WtStream<CloudFrame, DeviceFrame>({
    http2Session: session.sessionint?.objint?.stream?.session,
    pingIntervalMs: options.pingIntervalMs,
    deadPeerTimeoutMs: options.deadPeerTimeoutMs,
    session,
    control,
    codec,
    inSchema: CloudFrameSchema,
    outSchema: DeviceFrameSchema,
    maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    highWaterMark: options.highWaterMark,
    writeDeadlineMs: options.writeDeadlineMs,
    remoteAddress: url,
  });
}
