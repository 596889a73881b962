/**
 * Whether the peer under test can be reached at all, checked once before the
 * cases (issue 16: a down or wrong target gave 164 FAIL rows, each after its
 * own timeout). Reached means it answered: a cloud sent something (any frame)
 * in reply to a Hello; a device connected. A peer that answers wrongly is
 * reached, and its cases say what is wrong.
 */
import { field, isClose, Probe } from "./probe.js";
import type { RawSession } from "./raw-client.js";
import type { Codec } from "./wire.js";

/** How the peer could not be reached, when the suite knows better than the transport's words. */
export type UnreachableKind = "timeout" | "exited";

/** The peer under test could not be reached; no case was run. `cause`: what the transport threw. */
export class TargetUnreachable extends Error {
  constructor(
    message: string,
    readonly kind?: UnreachableKind,
    cause?: unknown,
  ) {
    super(message, { cause });
  }
}

/** How long the connection and the answer to the Hello may take. Generous: a cloud may hold its HelloAck for a free sequence. */
export const REACH_TIMEOUT_MS = 15_000;

/** The gRPC statuses a refused call ends with, by name (the causes are matched on these words). */
const GRPC_STATUS: Record<number, string> = {
  1: "CANCELLED",
  2: "UNKNOWN",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  7: "PERMISSION_DENIED",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  16: "UNAUTHENTICATED",
};

/** Opens a session, sends a Hello and waits for any answer; throws TargetUnreachable if none comes. */
export async function reachCloud(
  open: () => Promise<RawSession>,
  codec: Codec,
  transport: string,
  timeoutMs = REACH_TIMEOUT_MS,
): Promise<void> {
  const opening = open();
  const session = await within(opening, timeoutMs).catch((e: unknown) => {
    throw new TargetUnreachable(e instanceof Error ? e.message : String(e), undefined, e);
  });
  if (session === undefined) {
    opening.then((late) => late.close()).catch(() => undefined); // one that connects too late is not left open
    throw new TargetUnreachable(`no connection within ${timeoutMs} ms (timed out)`, "timeout");
  }
  const probe = new Probe(session, codec, timeoutMs);
  try {
    await probe.hello({ await: false });
    // A first frame that does not decode is an answer too: the cases say what is wrong with it.
    const first = await probe.recv(timeoutMs).catch(() => "undecodable" as const);
    if (first === undefined)
      throw new TargetUnreachable(`connected, but no answer to a Hello within ${timeoutMs} ms (timed out)`, "timeout");
    if (first !== "undecodable" && isClose(first)) {
      const { code, reason } = first.closed;
      const status = transport === "grpc" ? ` (gRPC status ${GRPC_STATUS[code] ?? code})` : "";
      // grpc-js reports a refused or unresolvable address as a call that ended UNAVAILABLE, "No connection
      // established. Last error: ... Resolution note: " (empty note): no connection was ever made.
      const never = transport === "grpc" && /^No connection established\b/.test(reason);
      const said = reason
        .replace(/\s*Resolution note:\s*$/, "")
        .replace(/^No connection established\.\s*(?:Last error: (?:Error: )?)?/, "");
      throw new TargetUnreachable(
        never ? `no connection${status}: ${said}` : `closed the connection before any frame: ${code}${status} ${said}`,
      );
    }
    // A Hello refused for its missing credential: every case would be refused the same way.
    if (first !== "undecodable" && field(first, "error.code") === "ERROR_CODE_UNAUTHENTICATED")
      throw new TargetUnreachable(
        `the Hello was refused: Error UNAUTHENTICATED ${String(field(first, "error.message"))}`,
      );
  } finally {
    probe.close();
  }
}

/** `p`, or undefined after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
