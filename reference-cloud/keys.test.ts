/**
 * Credentials on every transport: a wrong key is refused before any
 * inference, a key's limit on concurrent requests holds across connections
 * and refuses only the request over it, and SIGHUP's reload applies new limits
 * and closes the connections of a key it removed.
 */
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDefaultModel } from "../engine/index.js";
import { CloudFrameSchema, Codec, DeviceFrameSchema, ErrorCode, PddError, type CloudFrame } from "../proto/index.js";
import { until } from "../proto/test/until.js";
import { connect, type DeviceStream } from "../transports/index.js";
import { constantTimeIncludes } from "./cloud.js";
import { readKeys, startCloud, type CloudPeer } from "./index.js";
import { createHash } from "node:crypto";

void CloudFrameSchema;
const dir = mkdtempSync(join(tmpdir(), "pdd-keys-"));
const keysFile = join(dir, "keys");
let cloud: CloudPeer;
beforeAll(async () => {
  writeFileSync(keysFile, "# test keys\nalpha 1\nbeta\n");
  cloud = await startCloud({
    model: ensureDefaultModel("tiny"),
    threads: 1,
    logLevel: "silent",
    keysFile,
    listen: { ws: "127.0.0.1:0", grpc: "127.0.0.1:0", webtransport: "127.0.0.1:0" },
  });
});
afterAll(() => cloud.close({ drainSeconds: 0 }));

async function session(
  url: string,
  token: string,
): Promise<{ s: DeviceStream; next: () => Promise<CloudFrame | undefined> }> {
  const s = await connect(url, { authToken: token, ca: cloud.certificate.cert });
  const it = s[Symbol.asyncIterator]();
  const next = async () => {
    try {
      const r = await it.next();
      return r.done ? undefined : r.value;
    } catch {
      return undefined;
    }
  };
  await s.send(
    create(DeviceFrameSchema, {
      body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } },
    }),
  );
  return { s, next };
}

/** Starts a long, slowly paced request and returns its first frame (Accepted, or Error when refused). */
async function start(x: Awaited<ReturnType<typeof session>>, id: number): Promise<CloudFrame> {
  await x.s.send(
    create(DeviceFrameSchema, {
      body: {
        case: "prefillRequest",
        value: {
          requestId: id,
          prompt: { case: "text", value: "The fox." },
          cloudTokenBudget: 200,
          targetTpotUs: 500_000,
        },
      },
    }),
  );
  for (;;) {
    const f = await x.next();
    if (!f) throw new Error("connection ended");
    const v = f.body.value as { requestId?: number } | undefined;
    if (v?.requestId === id && (f.body.case === "accepted" || f.body.case === "error")) return f;
  }
}

/** Reads a connection's frames up to its request's End. */
async function endOf(x: Awaited<ReturnType<typeof session>>, id: number): Promise<CloudFrame> {
  for (;;) {
    const f = await x.next();
    if (!f) throw new Error("connection ended before End");
    if (f.body.case === "end" && f.body.value.requestId === id) return f;
  }
}

/**
 * Sequences the cloud holds, from the gauge it sets once a request's sequence is released; the
 * request's count against its key is dropped in the same turn of the event loop.
 */
const active = async () => (await cloud.metrics.activeSequences.get()).values[0]?.value ?? 0;

/** Aborts the test's connections and waits until the cloud has freed every request and connection. */
async function closeAll(xs: Awaited<ReturnType<typeof session>>[]): Promise<void> {
  for (const x of xs) x.s.abort();
  await until(async () => (await active()) === 0 && cloud.connections === 0, "the cloud to free every request");
}

describe("keys file", () => {
  it("reads keys with optional limits and refuses a malformed line with its line number", () => {
    expect(readKeys(keysFile)).toEqual([{ key: "alpha", maxConcurrent: 1 }, { key: "beta" }]);
    const bad = join(dir, "bad");
    writeFileSync(bad, "gamma many\n");
    expect(() => readKeys(bad)).toThrow(/bad:1: expected "key" or "key max_concurrent"/);
  });

  it.each(["ws", "grpc", "webtransport"] as const)(
    "over %s: a wrong key gets UNAUTHENTICATED, and a key's limit refuses only the request over it",
    async (t) => {
      const url = cloud.urls[t]!;
      const wrong = await session(url, "gamma").catch((e: Error) => e);
      if (t === "ws") {
        // The upgrade itself is refused with HTTP 401 (PDD-WS-006), which the client reports as UNAUTHENTICATED.
        expect(wrong).toBeInstanceOf(PddError);
        expect(wrong).toMatchObject({ code: ErrorCode.UNAUTHENTICATED, message: expect.stringMatching(/ HTTP 401$/) });
      } else {
        // The session opens; the cloud sends no frame and closes it UNAUTHENTICATED (gRPC's trailers-only
        // status 16, WebTransport's session error 6).
        if (wrong instanceof Error) throw wrong;
        expect(await wrong.next()).toBeUndefined();
        expect((await wrong.s.closed).code).toBe(ErrorCode.UNAUTHENTICATED);
        wrong.s.abort();
      }

      const a1 = await session(url, "alpha");
      const a2 = await session(url, "alpha");
      const b = await session(url, "beta");
      try {
        expect((await start(a1, 1)).body.case).toBe("accepted");
        const over = await start(a2, 1);
        expect(over.body.case).toBe("error");
        expect(over.body.case === "error" && over.body.value.code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
        expect((await start(b, 1)).body.case).toBe("accepted"); // another key is not affected
        // The refused connection carries on: its next request is served once alpha's first has ended
        // and the cloud has freed it (beta's request is then the only one left).
        await a1.s.send(
          create(DeviceFrameSchema, { body: { case: "cancel", value: { requestId: 1, code: ErrorCode.CANCELLED } } }),
        );
        await endOf(a1, 1);
        await until(async () => (await active()) === 1, "the cloud to free alpha's cancelled request");
        expect((await start(a2, 2)).body.case).toBe("accepted");
      } finally {
        await closeAll([a1, a2, b]);
      }
    },
  );

  it("applies new limits on reload (SIGHUP)", async () => {
    writeFileSync(keysFile, "alpha 2\nbeta\n");
    cloud.reloadKeys();
    const x = await session(cloud.urls.ws!, "alpha");
    const y = await session(cloud.urls.ws!, "alpha");
    try {
      expect((await start(x, 1)).body.case).toBe("accepted");
      expect((await start(y, 1)).body.case).toBe("accepted");
    } finally {
      await closeAll([x, y]);
      writeFileSync(keysFile, "alpha 1\nbeta\n");
      cloud.reloadKeys();
    }
  });

  it.each(["ws", "grpc", "webtransport"] as const)(
    "over %s: a key removed on reload loses its open connection with UNAUTHENTICATED (PDD-SEC-009)",
    async (t) => {
      const x = await session(cloud.urls[t]!, "beta");
      const kept = await session(cloud.urls[t]!, "alpha");
      try {
        expect((await x.next())?.body.case).toBe("helloAck");
        expect((await kept.next())?.body.case).toBe("helloAck");
        writeFileSync(keysFile, "alpha 1\n");
        cloud.reloadKeys();
        const f = await x.next();
        const code = f?.body.case === "error" ? f.body.value.code : (await x.s.closed).code;
        expect(code).toBe(ErrorCode.UNAUTHENTICATED);
        expect((await start(kept, 1)).body.case).toBe("accepted"); // a key that stays keeps its connections
      } finally {
        await closeAll([x, kept]);
        writeFileSync(keysFile, "alpha 1\nbeta\n");
        cloud.reloadKeys();
      }
    },
  );

  it("compares fixed-length digests, so keys of any length are found and nothing else is (PDD-SEC-003)", () => {
    const keys = ["k", "a-much-longer-key-of-forty-two-characters", "beta"].map((k) =>
      createHash("sha256").update(k).digest(),
    );
    expect(constantTimeIncludes(keys, "beta")).toBe(true);
    expect(constantTimeIncludes(keys, "a-much-longer-key-of-forty-two-characters")).toBe(true);
    expect(constantTimeIncludes(keys, "bet")).toBe(false);
    expect(constantTimeIncludes(keys, "")).toBe(false);
    expect(constantTimeIncludes([], "beta")).toBe(false);
  });
});
