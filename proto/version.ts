/** Version negotiation (spec/03-versioning.md). Pure functions. */
import type { Version } from "./gen/pdd/v1/pdd_pb.js";

/** The protocol version this implementation speaks. */
export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 2;

export interface VersionPair {
  major: number;
  minor: number;
}

/**
 * Chooses the version for a connection (PDD-VER-002): the highest major both
 * sides offer, at the lower of the two minors. Returns undefined when the
 * sides share no major, which the cloud answers with UNSUPPORTED_VERSION.
 */
export function negotiateVersion(
  offered: readonly VersionPair[] | readonly Version[],
  supported: readonly VersionPair[],
): VersionPair | undefined {
  let best: VersionPair | undefined;
  for (const s of supported) {
    for (const o of offered) {
      if (o.major !== s.major) continue;
      const pick = { major: s.major, minor: Math.min(o.minor, s.minor) };
      if (!best || pick.major > best.major) best = pick;
    }
  }
  return best;
}
