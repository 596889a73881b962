/**
 * Issue 13, item 7, and the silent peer on every transport: a device stopped
 * with SIGSTOP mid-answer (no FIN, no reset) must be detected within the
 * dead-peer timeout and its sequence freed. Today WebTransport never detects
 * it: the keep-alive takes a failed PING callback for an ACK
 * (transports/http2-keepalive.ts); ws and gRPC take 30–45 s (defaults: ping
 * every 15 s, lost after 30 s; the cloud exposes neither).
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { eachBinding } from "../harness/cases.js";
import { afterAll, describe, expect } from "vitest";
import { CloudFixture } from "../harness/aftermath.js";
import { ownChild } from "../harness/cloud-process.js";
import { record } from "../harness/evidence.js";
import { TRANSPORTS } from "../harness/normal-device.js";
import { pollUntil } from "../harness/wait.js";
import { DEAD_PEER_DETECTION_MS } from "../limits.js";

const SCRIPT = resolve(import.meta.dirname, "../peers/silent-device.ts");
/** One cloud per transport, all at once: each transport's detection time is its own, and the wait is paid once. */
const fixtures = new Map(TRANSPORTS.map((b) => [b.name, new CloudFixture()]));
afterAll(() => Promise.all([...fixtures.values()].map((f) => f.stop())));

describe.concurrent("item 7: a silent device is detected within the dead-peer timeout on every transport", () => {
  eachBinding(TRANSPORTS, undefined, "a device under SIGSTOP mid-answer is lost and its sequence freed", async (b) => {
    const fixture = fixtures.get(b.name)!;
    const { cloud } = await fixture.get();
    const child = ownChild(
      spawn(
        process.execPath,
        ["--import", "tsx", SCRIPT, cloud.urls[b.key], b.codec, Buffer.from(cloud.certSha256).toString("hex")],
        { stdio: ["ignore", "pipe", "ignore"] },
      ),
    );
    try {
      await new Promise<void>((ok, fail) => {
        let out = "";
        child.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("streaming")) ok();
        });
        child.once("exit", () => fail(new Error("the silent device exited before streaming")));
      });
      const held0 = await cloud.held();
      child.kill("SIGSTOP");
      const r = await pollUntil(
        () => cloud.held(),
        (h) => h.connections === held0.connections - 1 && h.sequences === 0,
        DEAD_PEER_DETECTION_MS + 15_000,
        250,
      );
      record({
        case: `7 silent device (SIGSTOP) ${b.name}`,
        heldBefore: held0,
        heldAtEnd: r.value,
        detected: r.ok,
        detectionMs: r.ok ? r.ms : null,
        waitedMs: r.ms,
      });
      expect(r.ok).toBe(true);
      expect(r.ms).toBeLessThanOrEqual(DEAD_PEER_DETECTION_MS);
    } finally {
      child.kill("SIGKILL");
    }
    const after = await fixture.check(b);
    expect(after.healthy).toBe(true);
  });
});
