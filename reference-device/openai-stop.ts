/**
 * Stop strings over streamed text. Text is passed on as soon as it can no
 * longer be the start of a stop string; at a match, everything from the stop
 * string on is withheld (OpenAI: "the returned text will not contain the stop
 * sequence"), and the generation is to stop. @internal
 */
export class StopMatcher {
  private held = "";
  private out = "";
  /** The stop string that matched, once one has. */
  matched: string | undefined;

  constructor(
    private readonly stops: readonly string[],
    /** Text that is certainly part of the answer, in order. */
    private readonly emit: (text: string) => void = () => undefined,
  ) {}

  /** Everything emitted so far. */
  get text(): string {
    return this.out;
  }

  /** Adds generated text; returns true once a stop string has matched. */
  push(text: string): boolean {
    if (this.matched !== undefined) return true;
    this.held += text;
    let at = -1;
    for (const s of this.stops) {
      const i = this.held.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.matched = s;
      }
    }
    if (at >= 0) {
      this.release(this.held.slice(0, at));
      this.held = "";
      return true;
    }
    const keep = this.partialTail();
    this.release(this.held.slice(0, this.held.length - keep));
    this.held = this.held.slice(this.held.length - keep);
    return false;
  }

  /** The generation ended without a match: what was held back is answer text. */
  end(): void {
    if (this.matched === undefined) this.release(this.held);
    this.held = "";
  }

  /** Length of the longest tail of the held text that starts some stop string. */
  private partialTail(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.held.length); n > best; n--) {
        if (this.held.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }

  private release(text: string): void {
    if (text.length === 0) return;
    this.out += text;
    this.emit(text);
  }
}
