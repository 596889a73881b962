/**
 * The cloud process dies mid-answer (SIGKILL after the device showed the
 * first token): the device finishes locally with the complete, correct greedy
 * text — no token lost, none repeated.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, PRESETS } from "../engine/index.js";
import { PdDevice } from "./device.js";

const root = resolve(import.meta.dirname, "..");
const dir = mkdtempSync(join(tmpdir(), "pdd-fallback-"));
const model = join(dir, "tiny.gguf");
let engine: Engine;

beforeAll(async () => {
  createModel(model, PRESETS.tiny);
  engine = await Engine.load({ modelPath: model, sequences: 4, threads: 1 });
});
afterAll(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `pdd cloud` in its own process; resolves with its URLs. */
async function spawnCloud(): Promise<{ child: ChildProcess; urls: Record<string, string> }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(root, "cli", "pdd.ts"),
      "cloud",
      "--model",
      model,
      "--ws",
      "127.0.0.1:0",
      "--grpc",
      "127.0.0.1:0",
      "--no-webtransport",
      "--threads",
      "1",
      // A token every 4 display intervals: the 60-token budget lasts seconds, so the cloud is
      // killed mid-stream however late the test sees the first token.
      "--pace",
      "0.25",
      "--log-level",
      "warn",
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const line = await new Promise<string>((res, rej) => {
    createInterface({ input: child.stdout! }).once("line", res);
    child.once("exit", (code) => rej(new Error(`pdd cloud exited with ${code}`)));
  });
  return { child, urls: (JSON.parse(line) as { listening: Record<string, string> }).listening };
}

describe("fallback", () => {
  it.each(["ws", "grpc"])(
    "over %s, the device completes the greedy answer when the cloud process is killed after the first token",
    async (transport) => {
      const prompt = "Tell me everything about the quick fox, in detail, from the beginning to the end.";
      const baseline = await (await PdDevice.create({ engine })).generate(prompt, {
        maxTokens: 80,
        localOnly: true,
        targetTpotMs: 0,
      });
      const { child, urls } = await spawnCloud();
      try {
        // Slow local prefill and a paced cloud: the answer is mid-stream when the cloud dies.
        const device = await PdDevice.create({
          engine,
          cloud: urls[transport],
          useKv: false,
          emulate: { prefillMsPerToken: 20 },
        });
        let killed = false;
        const r = await device.generate(prompt, {
          maxTokens: 80,
          cloudBudget: 60,
          targetTpotMs: 10,
          onText: () => {
            if (!killed) {
              killed = true;
              child.kill("SIGKILL");
            }
          },
        });
        await device.close();
        expect(killed).toBe(true);
        expect(r.mode).toBe("fallback");
        expect(r.cloudTokens).toBeGreaterThan(0);
        expect([...r.cloudTokenIds, ...r.deviceTokenIds]).toEqual(baseline.deviceTokenIds);
        expect(r.text).toBe(baseline.text);
      } finally {
        child.kill("SIGKILL");
      }
    },
  );

  it("answers alone when the cloud cannot be reached at all", async () => {
    // Port 9 (discard): privileged, so no test can be listening there.
    const device = await PdDevice.create({ engine, cloud: "ws://127.0.0.1:9/pdd" });
    const r = await device.generate("Go.", { maxTokens: 20, targetTpotMs: 0 });
    await device.close();
    expect(r.mode).toBe("fallback");
    expect(r.deviceTokens).toBe(20);
    // The cause, not "unreachable" (issue 16).
    expect(r.fallbackCause).toBe("refused");
    expect(r.fallbackReason).toMatch(/^refused: .*ECONNREFUSED/);
  });
});
