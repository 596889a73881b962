/**
 * A scripted cloud on the far side of an in-memory pair (createLinkedPair):
 * it answers the device's Hello as a cloud running the device's own model
 * (so the device evaluates the cloud's token IDs, PDD-MSG-009), sends what
 * the test's script says on the PrefillRequest, ends the request on the
 * device's Takeover or Cancel, and records every frame the device sent.
 *
 * Frames are handled one at a time, in order: a Ping the device sends after
 * its PrefillRequest is answered only once the script has sent everything,
 * so `link.ping()` resolving tells the device side that all of it has
 * arrived (an event, not a wait). @internal
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { InferenceEngine } from "../../engine/index.js";
import {
  CloudFrameSchema,
  Codec,
  EndReason,
  KvFormat,
  ModelIdentitySchema,
  type DeviceFrame,
  type ModelIdentity,
  type PrefillRequest,
} from "../../proto/index.js";
import { createLinkedPair } from "../../transports/index.js";
import { CloudLink } from "../cloud-link.js";

export type CloudBody = MessageInitShape<typeof CloudFrameSchema>["body"];
export type Script = (request: PrefillRequest, send: (body: CloudBody) => Promise<void>) => Promise<void>;

export interface ScriptedCloud {
  /** The device's connection, handshake done. */
  link: CloudLink;
  /** Every frame the device sent, in order. */
  seen: DeviceFrame[];
}

export const identityOf = (engine: InferenceEngine): ModelIdentity => create(ModelIdentitySchema, { ...engine.info });

/** `kv`: the cloud offers KV images (HelloAck capabilities). */
export async function scriptedCloud(
  engine: InferenceEngine,
  script: Script,
  o: { kv?: boolean } = {},
): Promise<ScriptedCloud> {
  const { device, cloud } = createLinkedPair();
  const seen: DeviceFrame[] = [];
  let sentTokens = 0;
  const send = (body: CloudBody) => {
    const frame = create(CloudFrameSchema, { body });
    if (frame.body.case === "firstToken") sentTokens += 1;
    if (frame.body.case === "tokenBatch") sentTokens += frame.body.value.tokens.length;
    return cloud.send(frame);
  };
  const end = (requestId: number, reason: EndReason, tokenCount: number) =>
    send({ case: "end", value: { requestId, reason, tokenCount, usage: { sentTokens } } });
  void (async () => {
    for await (const f of cloud) {
      seen.push(f);
      const b = f.body;
      if (b.case === "hello") await send({ case: "helloAck", value: helloAck(engine, o.kv === true) });
      else if (b.case === "prefillRequest") await script(b.value, send);
      else if (b.case === "ping")
        await send({ case: "pong", value: { nonce: b.value.nonce, pingSentAtUs: b.value.sentAtUs } });
      else if (b.case === "takeover") await end(b.value.requestId, EndReason.TAKEN_OVER, b.value.index);
      else if (b.case === "cancel") await end(b.value.requestId, EndReason.CANCELLED, sentTokens);
    }
  })().catch(() => undefined);
  const link = await CloudLink.over(device, identityOf(engine));
  await link.helloAck();
  return { link, seen };
}

function helloAck(engine: InferenceEngine, kv: boolean) {
  return {
    version: { major: 1, minor: 0 },
    codec: Codec.PROTO,
    limits: { maxFrameBytes: 4 << 20, maxPromptTokens: 4096, maxConcurrentRequests: 4, maxCloudTokenBudget: 64 },
    cloudModel: identityOf(engine),
    capabilities: { kvChunks: kv, kvFormats: kv ? [KvFormat.LLAMA_SEQ_STATE] : [], refinement: false, tokenIds: true },
  };
}
