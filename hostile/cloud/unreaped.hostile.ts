/**
 * Issue 13, item 6: connections never reaped, without a credential.
 * gRPC calls with a `grpc-encoding` the cloud does not accept are never
 * answered (transports/grpc/stream.ts `pump`/`peerEnded`); WebTransport
 * sessions that never open their control stream are never closed
 * (transports/webtransport/server.ts awaits the control stream with no
 * timeout); device-opened unidirectional streams are read as control streams
 * (transports/webtransport/stream.ts `acceptKvStreams`).
 */
import { afterAll, describe, expect, it } from "vitest";
import { CloudFixture } from "../harness/aftermath.js";
import { mib, record } from "../harness/evidence.js";
import { hello } from "../harness/frames.js";
import { TRANSPORTS } from "../harness/normal-device.js";
import { grpcCall, grpcConnection } from "../harness/raw-grpc.js";
import { wtSession, type WtSessionLike } from "../harness/raw-peers.js";
import { pollUntil, within } from "../harness/wait.js";

const HANDSHAKE_MS = 2_000;
const fixture = new CloudFixture({ config: { limits: { handshakeTimeoutMs: HANDSHAKE_MS } } });
// 6a's cloud requires a key, and its calls carry a wrong one: a refusal by the encoding (UNIMPLEMENTED), not by
// the credential (UNAUTHENTICATED), shows the call is judged before authentication (PDD-GRPC-007).
const KEY = "hostile-key";
const keyed = new CloudFixture({ keys: `${KEY}\n`, config: { limits: { handshakeTimeoutMs: HANDSHAKE_MS } } }, KEY);
afterAll(() => Promise.all([fixture.stop(), keyed.stop()]));
const grpc = TRANSPORTS.find((b) => b.key === "grpc")!;
const wt = TRANSPORTS.find((b) => b.key === "webtransport")!;

describe("item 6: connections are answered or reaped, with or without a credential", () => {
  it.each(["gzip", "br", "x-unknown"])(
    "gRPC calls with grpc-encoding %s and a wrong key are refused UNIMPLEMENTED at once, and none stays open",
    async (encoding) => {
      const { cloud } = await keyed.get();
      const rss0 = cloud.rss();
      const sessions = Array.from({ length: 4 }, () => grpcConnection(cloud.urls.grpc));
      const calls = Array.from({ length: 200 }, (_, i) => grpcCall(sessions[i % 4]!, { encoding, token: "wrong-key" }));
      for (const c of calls) c.send(hello("proto"), true);
      const statuses = await Promise.all(calls.map((c) => within(c.status, HANDSHAKE_MS + 3_000)));
      const answered = statuses.filter((s) => s !== undefined && s !== "closed");
      const rssAttack = cloud.rss();
      // Answered, so reaped: none of them is a connection the cloud still holds (before the fix none was
      // answered, and none was counted either).
      const connections = (await cloud.held()).connections;
      for (const s of sessions) s.destroy();
      const after = await keyed.check(grpc);
      record({
        case: `6a grpc-encoding ${encoding}`,
        calls: calls.length,
        answered: answered.length,
        statuses: [...new Set(statuses.map(String))],
        pddConnections: connections,
        rssGrowthMiB: mib(rssAttack - rss0),
        healthy: after.healthy,
      });
      expect(answered.length).toBe(calls.length);
      expect(statuses.filter((s) => s !== "12")).toEqual([]); // UNIMPLEMENTED, each of them
      expect(connections).toBe(0);
      expect(after.healthy).toBe(true);
    },
  );

  it("WebTransport sessions that never open their control stream are closed after the handshake timeout", async () => {
    const { cloud } = await fixture.get();
    const sessions: WtSessionLike[] = [];
    for (let i = 0; i < 50; i++) sessions.push(await wtSession(cloud.urls.webtransport, "proto", cloud.certSha256));
    let closed = 0;
    for (const s of sessions)
      void s.closed.then(
        () => closed++,
        () => closed++,
      );
    const r = await pollUntil(
      () => closed,
      (n) => n === sessions.length,
      HANDSHAKE_MS + 5_000,
      100,
    );
    for (const s of sessions)
      try {
        s.close({ closeCode: 0, reason: "" });
      } catch {
        // closed by the cloud
      }
    const after = await fixture.check(wt);
    record({
      case: "6b WT sessions without a control stream",
      sessions: 50,
      closedByCloud: r.value,
      waitedMs: r.ms,
      healthy: after.healthy,
    });
    expect(r.value).toBe(sessions.length);
    expect(after.healthy).toBe(true);
  });

  it("device-opened WebTransport unidirectional streams are refused, not read as control streams", async () => {
    const { cloud } = await fixture.get();
    const rss0 = cloud.rss();
    const session = await wtSession(cloud.urls.webtransport, "proto", cloud.certSha256, { windowBytes: 16 << 20 });
    const control = await session.createBidirectionalStream();
    const w = control.writable.getWriter();
    const h = Buffer.alloc(4);
    const hf = hello("proto");
    h.writeUInt32BE(hf.length);
    await w.write(Buffer.concat([h, hf]));
    let closed = false;
    void session.closed.then(
      () => (closed = true),
      () => (closed = true),
    );
    const partial = Buffer.alloc(1 << 20, 0x0a);
    partial.writeUInt32BE((4 << 20) - 64, 0); // a 4 MiB frame, never finished
    for (let i = 0; i < 30 && !closed; i++) {
      const uni = await session.createUnidirectionalStream().catch(() => undefined);
      if (!uni) break;
      void uni
        .getWriter()
        .write(partial)
        .catch(() => undefined);
    }
    const r = await pollUntil(
      () => closed,
      (c) => c,
      5_000,
      100,
    );
    const rssAttack = cloud.rss();
    try {
      session.close({ closeCode: 0, reason: "" });
    } catch {
      // closed by the cloud
    }
    const after = await fixture.check(wt);
    record({
      case: "6c device-opened WT uni streams",
      streams: 30,
      sessionClosedByCloud: r.value,
      rssGrowthMiB: mib(rssAttack - rss0),
      healthy: after.healthy,
    });
    expect(r.value).toBe(true);
    expect(rssAttack - rss0).toBeLessThan(32 << 20);
    expect(after.healthy).toBe(true);
  });
});
