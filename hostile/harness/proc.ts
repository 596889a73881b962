/** What the operating system says about a child process: its memory, from /proc. */
import { readFileSync } from "node:fs";

/** Resident set size in bytes (VmRSS); 0 when the process is gone. */
export function rssOf(pid: number): number {
  return statusField(pid, "VmRSS");
}

/** Peak resident set size in bytes (VmHWM). */
export function peakRssOf(pid: number): number {
  return statusField(pid, "VmHWM");
}

function statusField(pid: number, name: string): number {
  try {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples a process's peak RSS every `everyMs` until stopped. With `hwm`
 * (for a process started for this measurement) the kernel's own high-water
 * mark counts too, so a spike between two samples is not missed.
 */
export function sampleRss(pid: number, everyMs = 50, hwm = false): { peak(): number; stop(): number } {
  let peak = 0;
  const read = () => (hwm ? Math.max(rssOf(pid), peakRssOf(pid)) : rssOf(pid));
  peak = read();
  const timer = setInterval(() => (peak = Math.max(peak, read())), everyMs);
  timer.unref();
  return {
    peak: () => Math.max(peak, read()),
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, read());
    },
  };
}
