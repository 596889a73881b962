/**
 * Issue 13, item 11: the smaller problems, as the review found them (each
 * fixed since; README.md "After"). A gRPC `:path` with a query skipped the
 * transport's credential check (transports/grpc/server.ts compared `req.url`
 * to the path exactly); `application/grpc+json` was served (Connect's JSON
 * codec was left on); an invalid UTF-8 prompt was refused over proto but
 * served over msgpack (msgpackr decoded it with replacement characters); a
 * normal WebTransport close was said to count as MALFORMED_FRAME (not
 * reproduced).
 */
import { create } from "@bufbuild/protobuf";
import { Packr } from "msgpackr";
import { DeviceFrameSchema } from "../../proto/index.js";
import { FrameLog } from "../harness/inbox.js";
import { afterAll, describe, expect, it } from "vitest";
import { decodeCloud } from "../../conformance/wire.js";
import { CloudFixture } from "../harness/aftermath.js";
import { eachBinding } from "../harness/cases.js";
import { record } from "../harness/evidence.js";
import { hello } from "../harness/frames.js";
import { BINDINGS, openSession, TRANSPORTS, type Binding } from "../harness/normal-device.js";
import { grpcCall, grpcConnection, SESSION_PATH } from "../harness/raw-grpc.js";
import { drain, rawSession } from "../harness/raw-session.js";
import { pollUntil, within } from "../harness/wait.js";

const KEY = "hostile-key";
const fixture = new CloudFixture({ keys: `${KEY}\n` }, KEY);
afterAll(() => fixture.stop());
const grpc = TRANSPORTS.find((b) => b.key === "grpc")!;

describe("item 11: smaller problems", { tags: ["quick"] }, () => {
  it("a gRPC :path with a query is refused at once, not served past the credential check", async () => {
    const { cloud } = await fixture.get();
    const results: Record<string, string | undefined> = {};
    for (const path of [SESSION_PATH, `${SESSION_PATH}?x=1`]) {
      const session = grpcConnection(cloud.urls.grpc);
      const call = grpcCall(session, { path, token: "wrong-key" });
      // No Hello: the transport alone must refuse.
      results[path] = await within(call.status, 3_000);
      session.destroy();
    }
    const after = await fixture.check(grpc);
    record({ case: "11a gRPC path with a query", statusWithin3s: results, healthy: after.healthy });
    expect(results[SESSION_PATH]).toBe("16");
    // Refused at once as an unknown method (PDD-GRPC-007: UNIMPLEMENTED), before the credential is looked at:
    // a cloud that checked the credential first would answer 16 here too.
    expect(results[`${SESSION_PATH}?x=1`]).toBe("12");
    expect(after.healthy).toBe(true);
  });

  it("application/grpc+json is refused with HTTP 415, before the credential is looked at", async () => {
    const { cloud } = await fixture.get();
    const session = grpcConnection(cloud.urls.grpc);
    // A wrong credential (a missing one may still come in the Hello, so the transport lets it pass): a cloud that
    // checked it first would answer UNAUTHENTICATED (16), not 415.
    const call = grpcCall(session, { contentType: "application/grpc+json", token: "wrong-key" });
    call.send(Buffer.from(JSON.stringify({ hello: { versions: [{ major: 1 }], codecs: ["CODEC_PROTO"] } })));
    const first = await within(
      Promise.race([
        call.messages.next(3_000).then((m) => (m ? `a message: ${Buffer.from(m).toString()}` : "none")),
        call.status.then((s) => `status ${s}`),
      ]),
      3_500,
    );
    const httpStatus = (await within(call.headers, 1_000))?.[":status"];
    session.destroy();
    const after = await fixture.check(grpc);
    record({ case: "11b application/grpc+json", first: first?.slice(0, 120), httpStatus, healthy: after.healthy });
    expect(httpStatus).toBe(415); // PDD-GRPC-007
    expect(first ?? "").not.toMatch(/^a message/);
    expect(after.healthy).toBe(true);
  });

  eachBinding(
    BINDINGS.filter((b) => b.key !== "grpc"),
    undefined,
    "a prompt that is not UTF-8 is refused",
    async (b: Binding) => {
      const { cloud } = await fixture.get();
      const s = await rawSession(cloud, b, KEY);
      s.send(hello(b.codec));
      s.send(invalidUtf8Prompt(b.codec));
      const { frames, close } = await drain(s, 5_000);
      s.close();
      const bodies = frames
        .map((f) => decodeCloud(f, b.codec))
        .map((f) => (f.body === "error" ? `error ${(f.error as { code: string }).code}` : f.body));
      const after = await fixture.check(b);
      record({
        case: `11c invalid UTF-8 prompt ${b.name}`,
        frames: bodies,
        close: close?.code,
        healthy: after.healthy,
      });
      expect(bodies).not.toContain("firstToken");
      expect(bodies.some((x) => x?.startsWith("error")) || close !== undefined).toBe(true);
      expect(after.healthy).toBe(true);
    },
  );

  eachBinding(
    BINDINGS.filter((b) => b.key === "webtransport"),
    undefined,
    "a normal close is not counted as MALFORMED_FRAME",
    async (b) => {
      const { cloud } = await fixture.get();
      const malformed = async () => (await cloud.metrics()).get('pdd_errors_total{code="MALFORMED_FRAME"}') ?? 0;
      const gone = () =>
        pollUntil(
          () => cloud.held(),
          (h) => h.connections === 0,
          5_000,
        );
      // The conformance client's close (session close, code 0), then the reference device's (Goodbye, control stream end, session close).
      const before = await malformed();
      const s = await rawSession(cloud, b, KEY);
      s.send(hello(b.codec));
      await s.next(5_000); // HelloAck
      s.close(0, "");
      await gone();
      const afterRaw = await malformed();
      const d = await openSession(cloud, b, KEY);
      const log = new FrameLog(d);
      await log.first("helloAck", 5_000);
      await d.send(create(DeviceFrameSchema, { body: { case: "goodbye", value: { reason: "done" } } }));
      await d.close();
      await gone();
      const counted = (await malformed()) - before;
      const after = await fixture.check(b);
      record({
        case: `11d WT normal close ${b.name}`,
        malformedAfterRawClose: afterRaw - before,
        malformedAfterDeviceClose: counted - (afterRaw - before),
        healthy: after.healthy,
      });
      expect(counted).toBe(0);
      expect(after.healthy).toBe(true);
    },
  );
});

/** A PrefillRequest whose text has the byte 0xFF in it (never valid UTF-8). */
function invalidUtf8Prompt(codec: "proto" | "msgpack"): Uint8Array {
  const marker = "The fox Z.";
  const bytes =
    codec === "msgpack"
      ? Buffer.from(
          new Packr({ useRecords: false }).pack({
            prefillRequest: { requestId: 1, text: marker, cloudTokenBudget: 4 },
          }),
        )
      : Buffer.concat([
          Buffer.from([0x12, marker.length + 6, 0x08, 0x01, 0x12, marker.length]),
          Buffer.from(marker),
          Buffer.from([0x30, 0x04]),
        ]);
  const i = bytes.indexOf("Z");
  bytes[i] = 0xff;
  return bytes;
}
