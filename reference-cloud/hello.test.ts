/**
 * The credential is checked before anything else in the Hello (issue 13,
 * item 5, "authenticate first"): a device without one learns nothing about
 * the cloud, not even which versions it speaks, and costs it no further work.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { Codec, DeviceFrameSchema, ErrorCode, type CloudFrame, type HelloSchema } from "../proto/index.js";
import { createLinkedPair, type DeviceStream } from "../transports/index.js";
import { CloudConnection } from "./connection.js";
import { memoryCloud, type MemoryCloud } from "./test/memory-cloud.js";

const KEY = "sesame";
let cloud: MemoryCloud | undefined;
const opened: DeviceStream[] = [];
afterEach(() => {
  for (const d of opened.splice(0)) d.abort();
  cloud?.device.abort();
});

/** Opens a connection to the cloud, sends `hello`, and returns the cloud's first frame (undefined: closed without one). */
async function firstAnswer(
  c: MemoryCloud,
  hello: MessageInitShape<typeof HelloSchema>,
  token?: string,
): Promise<CloudFrame | undefined> {
  const { device, cloud: end } = createLinkedPair({ authToken: token });
  opened.push(device);
  void new CloudConnection(end, c.ctx).serve();
  await device.send(create(DeviceFrameSchema, { body: { case: "hello", value: hello } }));
  for await (const f of device) return f;
  return undefined;
}

const code = (f: CloudFrame | undefined) => (f?.body.case === "error" ? ErrorCode[f.body.value.code] : f?.body.case);

describe("a cloud with keys", () => {
  const unsupported = { versions: [{ major: 9, minor: 0 }], codecs: [Codec.PROTO] };
  const overLong = { versions: Array.from({ length: 9 }, (_, i) => ({ major: i + 1 })), codecs: [Codec.PROTO] };

  it("refuses a Hello without a credential with UNAUTHENTICATED, also when the Hello is otherwise invalid", async () => {
    cloud = await memoryCloud({}, { keys: { [KEY]: undefined }, token: KEY });
    // The same Hellos with the credential: each is refused for itself, so the order of the checks shows.
    expect(code(await firstAnswer(cloud, unsupported, KEY))).toBe("UNSUPPORTED_VERSION");
    expect(code(await firstAnswer(cloud, overLong, KEY))).toBe("INVALID_ARGUMENT");
    expect(code(await firstAnswer(cloud, unsupported))).toBe("UNAUTHENTICATED");
    expect(code(await firstAnswer(cloud, overLong))).toBe("UNAUTHENTICATED");
    expect(code(await firstAnswer(cloud, { ...unsupported, authToken: "wrong" }))).toBe("UNAUTHENTICATED");
  });

  it("tells a device without a credential nothing of the versions it speaks", async () => {
    cloud = await memoryCloud({}, { keys: { [KEY]: undefined }, token: KEY });
    const f = await firstAnswer(cloud, unsupported);
    expect(f?.body.case).toBe("error");
    const e = f?.body.case === "error" ? f.body.value : undefined;
    expect(e?.supportedVersions ?? []).toEqual([]);
    expect(e?.message).not.toMatch(/9\.0|version/);
  });
});
