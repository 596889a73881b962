/**
 * Why the device could not use its cloud, as one word a script can test and
 * one line a person can act on (issue 16: every failure used to read "cloud
 * unavailable: unreachable"). The transports report failures in their own
 * words (Node's socket and TLS codes, HTTP statuses, gRPC statuses); this maps
 * them to the causes the README documents (pdd device, and pdd conformance
 * for a target it cannot reach).
 */
import { ErrorCode, PddError } from "../proto/index.js";

export type FailureCause =
  /** The URL itself: a scheme no binding has, or not a URL. */
  | "scheme"
  /** The host name does not resolve. */
  | "dns"
  /** Nothing listens there (the cloud is down, or a wrong port). */
  | "refused"
  /** The certificate is not trusted, expired, or for another name. */
  | "tls"
  /** The cloud refused the credential (missing or wrong --token). */
  | "auth"
  /** The server has no PDD endpoint at that path. */
  | "not-found"
  /** The cloud does not speak the codec asked for. */
  | "codec"
  /** The server does not speak this binding (e.g. a ws:// URL at the gRPC port). */
  | "protocol"
  /** No answer within the connection timeout. */
  | "timeout"
  /** The cloud answered but refused or ended the connection (busy, draining, version). */
  | "refused-by-cloud";

export interface ConnectFailure {
  cause: FailureCause;
  /** `cause: detail`, one line. */
  message: string;
}

const TLS =
  /certificate|CERT_|self[- ]signed|unable to verify|altnames|Hostname\/IP|SSL|TLS|ERR_TLS|hash does not match/i;

/** What went wrong connecting to `url`, from whatever the transport threw. */
export function connectFailure(e: unknown, url: string): ConnectFailure {
  const err = PddError.from(e);
  const text = chain(e);
  const cause = classify(err, text);
  return { cause, message: `${cause}: ${detail(cause, url, err.rawMessage)}` };
}

function classify(err: PddError, text: string): FailureCause {
  if (err.code === ErrorCode.UNAUTHENTICATED || /\b401\b|unauthenticated/i.test(text)) return "auth";
  if (err.code === ErrorCode.UNSUPPORTED_CODEC) return "codec";
  if (err.code === ErrorCode.INVALID_ARGUMENT && /scheme|not a URL/i.test(text)) return "scheme";
  if (/ENOTFOUND|EAI_AGAIN|getaddrinfo/.test(text)) return "dns";
  if (/ECONNREFUSED/.test(text)) return "refused";
  // A TLS client (wss://, grpcs://) at a port that does not speak TLS: a scheme for another port, not a trust problem.
  if (/wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(text)) return "protocol";
  if (TLS.test(text)) return "tls";
  if (/\b404\b|not found|unimplemented/i.test(text)) return "not-found";
  if (/timed? ?out|ETIMEDOUT|no session within|no HelloAck/i.test(text)) return "timeout";
  if (
    /\bHTTP (4\d\d|5\d\d)\b|Parse Error|socket hang up|ECONNRESET|protocol error|PROTOCOL_ERROR|Unexpected server response|malformed|invalid frame|HTTP\/1|GOAWAY|closed the connection|ERR_HTTP2/i.test(
      text,
    )
  )
    return "protocol";
  return "refused-by-cloud";
}

const HINT: Record<FailureCause, string> = {
  scheme: "use ws://, wss://, grpc://, grpcs:// or https:// (WebTransport)",
  dns: "check the host name",
  refused: "is `pdd cloud` running at that address and port?",
  tls: "trust the cloud's certificate with --ca PEM (or, for https://, --cert-sha256 HEX)",
  auth: "give the cloud's key with --token",
  "not-found": "check the URL's path",
  codec: "try --codec proto",
  protocol:
    "the port serves another binding, or no TLS: check the scheme against the port (pdd cloud prints one URL per binding)",
  timeout: "the cloud did not answer in time",
  "refused-by-cloud": "see the cloud's reason",
};

function detail(cause: FailureCause, url: string, message: string): string {
  const said = message.includes(url) ? message : `${url}: ${message}`;
  return `${said} (${HINT[cause]})`;
}

/** The messages of `e` and its causes, for matching. */
function chain(e: unknown): string {
  const parts: string[] = [];
  let at: unknown = e;
  for (let i = 0; at !== undefined && at !== null && i < 6; i++) {
    const o = at as { message?: unknown; code?: unknown; rawMessage?: unknown; cause?: unknown };
    parts.push(String(o.message ?? at), String(o.code ?? ""), String(o.rawMessage ?? ""));
    at = o.cause;
  }
  return parts.join(" | ");
}
