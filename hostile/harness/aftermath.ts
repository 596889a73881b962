/**
 * What every attack on the cloud ends with (issue 13, "the hostile-peer
 * suite"): nothing held — 0 admission slots, 0 queued requests — RSS back
 * within 10% of before, and a normal device's full, correct answer within its
 * normal time. A cloud left unhealthy is replaced before the next case, so
 * one case's damage is never blamed on the next.
 */
import { CloudProcess, type CloudOptions, type Held } from "./cloud-process.js";
import { mib } from "./evidence.js";
import { fullAnswer, type Answer, type Binding } from "./normal-device.js";
import { pollUntil } from "./wait.js";

export interface Baseline {
  /** RSS after a warm-up answer. */
  rss: number;
  /** A normal answer's duration on an idle cloud, ms. */
  answerMs: number;
  maxGapMs: number;
}

export interface Aftermath {
  held: Held;
  /** Nothing held within the deadline. */
  released: boolean;
  releaseMs: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  rssOk: boolean;
  live: Answer;
  /** Everything the issue asks of a cloud after an attack. */
  healthy: boolean;
}

/** The bound a normal answer must meet after an attack: ten times its idle duration, at least 5 s. */
export const normalBound = (b: Baseline): number => Math.max(5_000, 10 * b.answerMs);

export async function baseline(cloud: CloudProcess, b: Binding, token?: string): Promise<Baseline> {
  await fullAnswer(cloud, b, { token }); // warm-up: the first answer pays for JIT and buffers
  const a = await fullAnswer(cloud, b, { token });
  if (!a.ok || !a.correct) throw new Error(`the cloud does not answer correctly before any attack: ${a.error}`);
  return { rss: cloud.rss(), answerMs: a.ms, maxGapMs: a.maxGapMs };
}

export async function aftermath(
  cloud: CloudProcess,
  base: Baseline,
  b: Binding,
  o: { releaseMs?: number; rssMs?: number; token?: string } = {},
): Promise<Aftermath> {
  const idle = await cloud.waitIdle(o.releaseMs ?? 15_000);
  const live = await fullAnswer(cloud, b, { deadlineMs: normalBound(base), token: o.token });
  const rss = await pollUntil(
    () => cloud.rss(),
    (r) => r <= 1.1 * base.rss,
    o.rssMs ?? 10_000,
    250,
  );
  const healthy = idle.ok && rss.ok && live.ok && live.correct && cloud.alive;
  return {
    held: idle.value,
    released: idle.ok,
    releaseMs: idle.ms,
    rssBeforeMiB: mib(base.rss),
    rssAfterMiB: mib(rss.value),
    rssOk: rss.ok,
    live,
    healthy,
  };
}

/** One cloud per test file, restarted whenever a case left it unhealthy. */
export class CloudFixture {
  private cloud: CloudProcess | undefined;
  private base: Baseline | undefined;
  private dirty = true;

  constructor(
    private readonly options: CloudOptions = {},
    /** The credential normal devices use (when `options.keys` holds one). */
    readonly token?: string,
    private readonly baselineBinding: Binding = { name: "ws/proto", key: "ws", codec: "proto" },
  ) {}

  /** A healthy cloud and its baseline. */
  async get(): Promise<{ cloud: CloudProcess; base: Baseline }> {
    if (this.dirty || !this.cloud?.alive) {
      await this.cloud?.stop(5_000);
      this.cloud = await CloudProcess.start(this.options);
      this.base = await baseline(this.cloud, this.baselineBinding, this.token);
      this.dirty = false;
    }
    return { cloud: this.cloud!, base: this.base! };
  }

  /** Checks the aftermath; a cloud that is not healthy is replaced before the next case. */
  async check(b: Binding, o: Parameters<typeof aftermath>[3] = {}): Promise<Aftermath> {
    const { cloud, base } = await this.get();
    const a = await aftermath(cloud, base, b, { token: this.token, ...o });
    if (!a.healthy) this.dirty = true;
    return a;
  }

  /** The case changed the cloud (keys, signals): the next case gets a new one. */
  discard(): void {
    this.dirty = true;
  }

  async stop(): Promise<void> {
    await this.cloud?.stop(5_000);
    this.cloud = undefined;
  }
}
