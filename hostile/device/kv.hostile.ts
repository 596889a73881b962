/**
 * Issue 13, item 4 (KV): a hostile cloud against the reference device. The
 * images are the device's own model's real image with one header field
 * changed (kv/mutations.ts), with correct CRCs and SHA-256, so they pass the
 * integrity checks and reach llama.cpp's loader. The device must answer with
 * the greedy text, exit 0, and stay within its memory, whatever the image.
 * Today: reference-device/run.ts hands any image to `importState` (only that
 * call is in try/catch), buffers every chunk and returns credit on arrival,
 * and waits for a granted image with no deadline.
 */
import { afterAll, describe, expect } from "vitest";
import { eachBinding } from "../harness/cases.js";
import { mib, record } from "../harness/evidence.js";
import { firstError, runDevice, type DeviceRun } from "../harness/device-process.js";
import {
  accepted,
  endAfterTakeover,
  greetDevice,
  hostileServer,
  kvChunks,
  encodeKv,
  sendKvChunks,
  tokenFrame,
  type Exchange,
  type HostileServer,
} from "../harness/hostile-cloud.js";
import { BINDINGS, type Binding } from "../harness/normal-device.js";
import { MUTATIONS } from "../kv/mutations.js";
import { KV_DEADLINE_MS } from "../limits.js";
import { closeDeviceCase, deviceCase, tokenOf, type DeviceCase } from "./fixture.js";

const servers = new Map<string, Promise<HostileServer>>();
const serverFor = (b: Binding) => {
  let s = servers.get(b.name);
  if (!s) {
    s = hostileServer(b);
    servers.set(b.name, s);
  }
  return s;
};
afterAll(async () => {
  for (const s of servers.values()) await (await s).server.close();
  await closeDeviceCase();
});

/** Memory the device may use beyond an honest KV run: 64 MiB. */
const SLACK = 64 << 20;
const FULL_SCALE = process.env.HOSTILE_FULL_SCALE === "1";
const honestPeak = new Map<string, number>();

/** Runs `pdd device` against the hostile cloud; `play` is the cloud's side after the device's request. */
async function attack(
  b: Binding,
  c: DeviceCase,
  play: (x: Exchange) => Promise<void>,
  deadlineMs = 30_000,
): Promise<{ run: DeviceRun; cloudSide: Promise<void> }> {
  const hs = await serverFor(b);
  const device = runDevice(
    {
      cloud: hs.server.url,
      prompt: c.prompt,
      maxTokens: c.maxTokens,
      budget: c.budget,
      codec: b.codec,
      caPem: hs.caPem,
      model: c.modelPath,
    },
    deadlineMs,
  );
  const session = await hs.server.accept(30_000);
  if (!session) throw new Error(`the device did not connect: ${(await device).stderr.slice(-300)}`);
  const cloudSide = (async () => {
    const x = await greetDevice(session, { kv: true });
    await play(x);
  })().finally(() => session.close());
  cloudSide.catch(() => undefined);
  return { run: await device, cloudSide };
}

/** Accepted with KV, the first token, the image, the other tokens, then End after the device's Takeover. */
const sendImage = (c: DeviceCase, image: Uint8Array) => async (x: Exchange) => {
  const encoded = encodeKv(x, kvChunks(x.id, image, c.promptTokens.length));
  x.p.send(accepted(x, c.promptTokens.length, c.budget, { totalBytes: image.length }));
  x.p.send(tokenFrame(x.id, 0, tokenOf(c, 0)));
  await sendKvChunks(x, encoded);
  for (let i = 1; i < c.budget; i++) x.p.send(tokenFrame(x.id, i, tokenOf(c, i)));
  await endAfterTakeover(x, c.budget);
};

const outcome = (r: DeviceRun) => ({
  code: r.code,
  hung: r.hung,
  reportMs: r.reportMs === undefined ? undefined : Math.round(r.reportMs),
  ms: Math.round(r.ms),
  peakRssMiB: mib(r.peakRss),
  mode: r.report?.mode,
  kvImported: r.report?.kvImported,
  fallback: r.report?.fallbackReason?.slice(0, 120),
  error: r.code === 0 ? undefined : firstError(r.stderr),
});

describe("item 4: a hostile cloud's KV image never crashes, exhausts or hangs the device", () => {
  eachBinding(BINDINGS, undefined, "the honest image (control: it is imported and the answer is greedy)", async (b) => {
    const c = await deviceCase();
    const { run } = await attack(b, c, sendImage(c, c.image));
    honestPeak.set(b.name, run.peakRss);
    record({ case: `4 KV control ${b.name}`, ...outcome(run) });
    expect(run.report?.kvImported).toBe(true);
    expect(run.report?.text).toBe(c.text);
    expect(run.code).toBe(0);
  });

  // 2^31−1 cells ask llama.cpp for 21 bytes × 2^31 ≈ 45 GB before it reads a cell: never run on a shared machine.
  const mutations = [
    ...MUTATIONS.filter((m) => m.name !== "cell count 2^31−1" && (FULL_SCALE || m.name !== "cell count 10^8")),
    ...(FULL_SCALE ? [] : [scaledCellCount()]),
  ];
  for (const m of mutations) {
    const quick = m.name.startsWith("token count 0") || m.name.startsWith("last position") ? "ws/proto" : undefined;
    eachBinding(BINDINGS, quick, `${m.name}: the device recomputes and answers greedily`, async (b) => {
      const c = await deviceCase();
      const image = m.build(c.image, c.engine.contextSize);
      const { run } = await attack(b, c, sendImage(c, image));
      const base = honestPeak.get(b.name) ?? run.peakRss;
      record({ case: `4 KV ${m.name} ${b.name}`, imageBytes: image.length, ...outcome(run), honestPeakMiB: mib(base) });
      expect(run.report?.text).toBe(c.text);
      expect(run.report?.kvImported).toBe(false);
      expect(run.code).toBe(0);
      expect(run.peakRss - base).toBeLessThan(SLACK);
    });
  }

  eachBinding(
    BINDINGS,
    undefined,
    "KV granted but never sent: the device recomputes after its KV deadline",
    async (b) => {
      const c = await deviceCase();
      const { run } = await attack(
        b,
        c,
        async (x) => {
          x.p.send(accepted(x, c.promptTokens.length, c.budget, { totalBytes: c.image.length }));
          for (let i = 0; i < c.budget; i++) x.p.send(tokenFrame(x.id, i, tokenOf(c, i)));
          await endAfterTakeover(x, c.budget, KV_DEADLINE_MS + 20_000);
        },
        KV_DEADLINE_MS + 20_000,
      );
      record({ case: `4 KV never sent ${b.name}`, ...outcome(run) });
      expect(run.hung).toBe(false);
      expect(run.report?.text).toBe(c.text);
      expect(run.code).toBe(0);
    },
  );

  eachBinding(BINDINGS, undefined, "an endless image (2^62 bytes declared): the device stops taking it", async (b) => {
    const c = await deviceCase();
    const cap = (FULL_SCALE ? 1024 : 64) << 20; // 64 MiB: ten times what the model and prompt imply, already
    let accepted_ = 0;
    const { run } = await attack(b, c, async (x) => {
      x.p.send(accepted(x, c.promptTokens.length, c.budget, { totalBytes: 0 }));
      for (let i = 0; i < c.budget; i++) x.p.send(tokenFrame(x.id, i, tokenOf(c, i)));
      accepted_ = await streamEndless(x, c, cap);
      x.p.send({
        end: {
          requestId: x.id,
          reason: "END_REASON_BUDGET_EXHAUSTED",
          tokenCount: c.budget,
          usage: { sentTokens: c.budget },
        },
      });
      await endAfterTakeover(x, c.budget, 5_000);
    });
    const base = honestPeak.get(b.name) ?? 0;
    const implied = c.engine.kvBytesPerToken * (c.promptTokens.length + c.budget) + (1 << 16);
    record({
      case: `4 KV endless ${b.name}`,
      capMiB: mib(cap),
      creditedMiB: mib(accepted_),
      impliedMiB: mib(implied),
      ...outcome(run),
      honestPeakMiB: mib(base),
    });
    expect(accepted_).toBeLessThanOrEqual(2 * implied);
    expect(run.report?.text).toBe(c.text);
    expect(run.code).toBe(0);
    expect(run.peakRss - base).toBeLessThan(SLACK);
  });
});

/** The default scale of the cell-count attack: 10^7 cells show the allocation before the read (10^8: 2 GB, the issue's). */
function scaledCellCount() {
  const m = MUTATIONS.find((x) => x.name === "cell count 10^8")!;
  return {
    name: "cell count 10^7 (the issue's 10^8 and 2^31−1, scaled)",
    build: (real: Uint8Array, ctx: number) => {
      const img = Buffer.from(m.build(real, ctx));
      const at = img.indexOf(Buffer.from(new Uint32Array([100_000_000]).buffer));
      img.writeUInt32LE(10_000_000, at);
      return new Uint8Array(img);
    },
  };
}

/**
 * Streams chunks of an image that never ends (total_bytes 2^62), within the
 * device's credit, until `cap` bytes or until the device stops crediting;
 * returns the bytes the device credited.
 */
async function streamEndless(x: Exchange, c: DeviceCase, cap: number): Promise<number> {
  const chunk = 1 << 20;
  let credit = x.initialCredit;
  let sent = 0;
  const data = Buffer.alloc(chunk);
  for (let i = 0; i < chunk; i++) data[i] = c.image[i % c.image.length]!;
  const [frame] = kvChunks(x.id, data, c.promptTokens.length, chunk);
  const body = frame!.kvChunk as Record<string, unknown>;
  while (sent < cap) {
    if (sent + chunk <= credit) {
      await sendKvChunks(
        x,
        encodeKv(x, [
          {
            kvChunk: { ...body, offset: String(sent), totalBytes: String(2n ** 62n), imageSha256: Buffer.alloc(0) },
          },
        ]),
        false,
      );
      sent += chunk;
      continue;
    }
    const r = await x.p.recv(10_000);
    if (r === undefined || "closed" in (r as object)) break;
    const f = r as { body?: string; kvCredit?: { bytes: string } };
    if (f.body === "kvCredit") credit += Number(f.kvCredit!.bytes);
    if (f.body === "cancel" || f.body === "takeover") break;
  }
  return Math.min(sent, credit);
}
