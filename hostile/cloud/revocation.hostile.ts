/**
 * Issue 13, item 9: SIGHUP does not revoke existing sessions. The cloud
 * checks a credential once, at Hello (reference-cloud/connection.ts
 * `onHello`); after a reload that drops the key, its connections go on being
 * served, and without a key entry its concurrency limit is gone too
 * (`ctx.keyLimit` finds no entry).
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, describe, expect } from "vitest";
import { DeviceFrameSchema, ErrorCode } from "../../proto/index.js";
import { CloudFixture } from "../harness/aftermath.js";
import { eachBinding } from "../harness/cases.js";
import { record } from "../harness/evidence.js";
import { FrameLog } from "../harness/inbox.js";
import { openSession, PROMPT, TRANSPORTS } from "../harness/normal-device.js";

const STAYS = "key-that-stays";
const REVOKED = "key-to-revoke";
const keys = (withRevoked: boolean) => `${STAYS}\n${withRevoked ? `${REVOKED} 1\n` : ""}`;
const fixture = new CloudFixture({ keys: keys(true) }, STAYS);
afterAll(() => fixture.stop());

describe("item 9: a key removed by SIGHUP stops being served on the connections it opened", () => {
  eachBinding(TRANSPORTS, "ws/proto", "new requests are refused", async (b) => {
    const { cloud } = await fixture.get();
    const s = await openSession(cloud, b, REVOKED);
    const log = new FrameLog(s);
    expect(await log.first("helloAck", 5_000)).toBeDefined();
    const from = cloud.lines.length;
    cloud.writeKeys(keys(false));
    cloud.signal("SIGHUP");
    const reloaded = await cloud.waitForLog(/keys reloaded/, 5_000, from);
    const t0 = performance.now();
    // Three at once: the revoked key's limit was 1. A cloud that closed the connection on reload refuses them all.
    for (let id = 1; id <= 3; id++)
      await s
        .send(
          create(DeviceFrameSchema, {
            body: {
              case: "prefillRequest",
              value: { requestId: id, prompt: { case: "text", value: PROMPT }, cloudTokenBudget: 4 },
            },
          }),
        )
        .catch(() => undefined);
    const outcomes = await Promise.all(
      [1, 2, 3].map(async (id) => {
        const first = await Promise.race([
          log.wait(id, "firstToken", 5_000).then((f) => (f ? "served" : undefined)),
          log
            .wait(id, "error", 5_000)
            .then((f) => (f?.body.case === "error" ? ErrorCode[f.body.value.code] : undefined)),
        ]);
        return first ?? (log.closed ? "connection closed" : "nothing");
      }),
    );
    const ms = performance.now() - t0;
    s.abort();
    // Nothing held, memory back, and a device whose key stayed gets its full answer on the reloaded cloud.
    const after = await fixture.check(b);
    fixture.discard(); // its keys file changed
    record({
      case: `9 SIGHUP revocation ${b.name}`,
      reloaded: reloaded !== undefined,
      outcomes,
      ms,
      healthy: after.healthy,
    });
    expect(reloaded).toBeDefined();
    expect(outcomes.filter((o) => o === "served")).toEqual([]);
    expect(after.healthy).toBe(true);
  });
});
