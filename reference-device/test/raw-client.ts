/** A minimal protocol client for tests that need to say things the reference device never says. @internal */
import { create } from "@bufbuild/protobuf";
import { Codec, DeviceFrameSchema, KvFormat, ModelIdentitySchema, type Accepted } from "../../proto/index.js";
import { connect } from "../../transports/index.js";

export async function rawRequest(
  url: string,
  model: { modelFingerprint: Uint8Array; tokenizerFingerprint: Uint8Array; name: string },
  opts: { kv?: boolean },
): Promise<Accepted> {
  const s = await connect(url);
  try {
    await s.send(
      create(DeviceFrameSchema, {
        body: {
          case: "hello",
          value: {
            versions: [{ major: 1, minor: 0 }],
            codecs: [Codec.PROTO],
            deviceModel: create(ModelIdentitySchema, model),
          },
        },
      }),
    );
    await s.send(
      create(DeviceFrameSchema, {
        body: {
          case: "prefillRequest",
          value: {
            requestId: 1,
            prompt: { case: "text", value: "Begin." },
            cloudTokenBudget: 2,
            kv: opts.kv ? { format: KvFormat.LLAMA_SEQ_STATE, initialCreditBytes: 1n << 20n } : undefined,
          },
        },
      }),
    );
    for await (const f of s) if (f.body.case === "accepted") return f.body.value;
    throw new Error("no Accepted");
  } finally {
    await s.close();
  }
}
