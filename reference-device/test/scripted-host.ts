/**
 * A PipelineHost for driving LocalPipeline without a cloud or a network:
 * the test scripts what the cloud has said (CloudAnswer), what the display
 * has shown and when, and what arriving during a wait means; the host
 * records the takeover. Time is whatever the test says it is (`clock`),
 * read by the pipeline through performance.now(). @internal
 */
import { vi } from "vitest";
import { CloudAnswer } from "../cloud-answer.js";
import { Display } from "../display.js";
import { KvReceiver } from "../kv-receiver.js";
import type { PipelineHost } from "../local-pipeline.js";

/** A display whose shown count and last shown time the test sets. */
export class ScriptedDisplay extends Display {
  shown = 0;
  shownAt: number | undefined;
  constructor(targetTpotMs: number) {
    super(targetTpotMs, { cloudRemaining: () => 0, localEtaMs: () => undefined, localTpotMs: () => undefined });
  }
  override get shownCloud(): number {
    return this.shown;
  }
  override get lastShownAt(): number | undefined {
    return this.shownAt;
  }
}

export interface Wait {
  /** The condition held when the wait began. */
  held: boolean;
  timeoutMs: number | undefined;
}

export interface ScriptedHost {
  host: PipelineHost;
  cloud: CloudAnswer;
  display: ScriptedDisplay;
  takeovers: number[];
  waits: Wait[];
}

/**
 * `onWait` runs at each wait whose condition does not hold yet: it is where
 * the test makes the cloud's next event happen (or not); the wait then ends.
 */
export function scriptedHost(o: {
  targetTpotMs: number;
  sameTokenizer: boolean;
  onWait?: (w: Wait) => void;
}): ScriptedHost {
  const cloud = new CloudAnswer();
  const display = new ScriptedDisplay(o.targetTpotMs);
  const takeovers: number[] = [];
  const waits: Wait[] = [];
  const host: PipelineHost = {
    cloud,
    kv: new KvReceiver(),
    display,
    cloudModelFingerprint: undefined,
    sameTokenizer: o.sameTokenizer,
    samePromptTokens: o.sameTokenizer,
    until: async (cond, timeoutMs) => {
      const w = { held: cond(), timeoutMs };
      waits.push(w);
      if (waits.length > 100) throw new Error("the pipeline keeps waiting: more than 100 waits");
      if (!w.held) o.onWait?.(w);
    },
    progress: () => undefined,
    takeover: async (k) => {
      takeovers.push(k);
    },
    abandonCloud: async () => false,
  };
  return { host, cloud, display, takeovers, waits };
}

/** performance.now() returns `clock.now` until restored (vi.restoreAllMocks). */
export function scriptedClock(start = 1_000_000): { now: number } {
  const clock = { now: start };
  vi.spyOn(performance, "now").mockImplementation(() => clock.now);
  return clock;
}
