/**
 * The cloud's log lines an operator reads: every line of a connection and of
 * its requests names the connection (request IDs restart on each one), and
 * --log-level debug shows each connection and request begin and end
 * (issue 16 item 9).
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTANT, SimEngine } from "../engine/index.js";
import { Codec, DeviceFrameSchema, type CloudFrame } from "../proto/index.js";
import { connect } from "../transports/index.js";
import { createLogger, startCloud, type CloudPeer } from "./index.js";

type Line = { level: string; msg: string; conn?: number; requestId?: number; end?: string; tokens?: number };
const lines: Line[] = [];
let cloud: CloudPeer;

beforeAll(async () => {
  cloud = await startCloud(
    { logLevel: "debug", listen: { ws: "127.0.0.1:0" } },
    {
      engine: new SimEngine({ profile: INSTANT, sequences: 2 }),
      log: createLogger("debug", { component: "pdd-cloud" }, (l) => lines.push(JSON.parse(l) as Line)),
    },
  );
});
afterAll(() => cloud.close({ drainSeconds: 0 }));

/** One connection that asks for request 1 (a 3-token budget) and waits for its End. */
async function oneRequest(): Promise<void> {
  const s = await connect(cloud.urls.ws!);
  try {
    const frame = (body: Parameters<typeof create<typeof DeviceFrameSchema>>[1]) =>
      s.send(create(DeviceFrameSchema, body));
    await frame({ body: { case: "hello", value: { versions: [{ major: 1, minor: 0 }], codecs: [Codec.PROTO] } } });
    await frame({
      body: {
        case: "prefillRequest",
        value: { requestId: 1, prompt: { case: "text", value: "The fox." }, cloudTokenBudget: 3, maxTokens: 3 },
      },
    });
    for await (const f of s as AsyncIterable<CloudFrame>) if (f.body.case === "end") break;
  } finally {
    await s.close();
  }
}

describe("the cloud's logs", () => {
  it("name the connection on each request's lines, so two request 1s are told apart", async () => {
    await oneRequest();
    await oneRequest();
    const ended = lines.filter((l) => l.msg === "request ended" && l.requestId === 1);
    expect(ended).toHaveLength(2);
    expect(ended.every((l) => l.level === "debug" && l.end === "MAX_TOKENS" && l.tokens === 3)).toBe(true);
    const [a, b] = ended.map((l) => l.conn);
    expect(typeof a).toBe("number");
    expect(a).not.toBe(b);
    for (const conn of [a, b]) {
      const msgs = lines.filter((l) => l.conn === conn).map((l) => l.msg);
      expect(msgs).toEqual(expect.arrayContaining(["connection opened", "request started", "request ended"]));
    }
  });

  it("say a reload without a keys file did nothing, once per reload", () => {
    const before = lines.length;
    cloud.reloadKeys();
    expect(lines.slice(before).map((l) => [l.level, l.msg])).toEqual([
      ["warn", "keys not reloaded: no keys file (start with --keys FILE)"],
    ]);
  });
});
