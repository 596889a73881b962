/**
 * Deliberately broken devices, beside the broken clouds of mutants.ts: the
 * reference device with one check or step taken out (patched on its classes
 * for the duration of a run), and a device with no model at all. Each must
 * fail the case named for what it breaks.
 * @internal test support
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Codec,
  DeviceFrameSchema,
  DeviceRequestState,
  EndReason,
  KvFormat,
  RefineMethod,
  type CloudFrame,
  type DeviceEvent,
  type HelloAck,
  type HelloSchema,
  type KvChunk,
  type ModelIdentity,
  type PrefillRequestSchema,
} from "../../proto/index.js";
import type { Engine } from "../../engine/index.js";
import { connect, type DeviceStream } from "../../transports/index.js";
import { CloudLink } from "../../reference-device/cloud-link.js";
import type { Display } from "../../reference-device/display.js";
import { KvReceiver } from "../../reference-device/kv-receiver.js";
import { LocalPipeline } from "../../reference-device/local-pipeline.js";
import { DeviceRun } from "../../reference-device/run.js";
import type { DeviceLauncher } from "../runner.js";

/** Replaces `obj[key]` for as long as the returned undo is not called. */
export function patch<T extends object>(
  obj: T,
  key: string,
  make: (orig: (...a: unknown[]) => unknown) => unknown,
): () => void {
  const rec = obj as Record<string, unknown>;
  const orig = rec[key] as (...a: unknown[]) => unknown;
  rec[key] = make(orig);
  return () => {
    rec[key] = orig;
  };
}

export interface DeviceMutant {
  name: string;
  /** The cases (by id) that must fail against it. */
  mustFail: string[];
  /** Breaks the reference device; returns the undo. */
  apply?: () => () => void;
  /** A device of its own instead of the reference one. */
  launcher?: (engine: Engine) => DeviceLauncher;
}

export const DEVICE_MUTANTS: DeviceMutant[] = [
  {
    name: "skips the chunk CRC check",
    mustFail: ["device.kv.bad-crc"],
    apply: () =>
      patch(
        KvReceiver.prototype,
        "chunk",
        (orig) =>
          function (this: KvReceiver, c: KvChunk, last: boolean) {
            return orig.call(this, { ...c, crc32: crc32(c.data) >>> 0 }, last);
          },
      ),
  },
  {
    name: "skips the image SHA-256 check",
    mustFail: ["device.kv.bad-sha"],
    apply: () =>
      patch(
        KvReceiver.prototype,
        "assemble",
        (orig) =>
          function (this: KvReceiver, total: number) {
            const image = Buffer.concat(Reflect.get(this, "chunks") as Uint8Array[]);
            return orig.call(this, total, createHash("sha256").update(image).digest());
          },
      ),
  },
  {
    name: "takes over without decoding",
    mustFail: ["device.kv.bad-crc", "device.kv.unloadable"],
    apply: () => patch(LocalPipeline.prototype, "decode", () => async () => undefined),
  },
  {
    name: "accepts a foreign model's KV (takes every cloud model for its own)",
    mustFail: ["device.kv.foreign-model"],
    apply: () => patch(CloudLink, "open", (orig) => trustingOpen(orig)),
  },
  {
    name: "shows cloud tokens past its takeover index",
    mustFail: ["device.takeover.in-flight"],
    apply: () =>
      patch(
        DeviceRun.prototype,
        "route",
        (orig) =>
          function (this: DeviceRun, ev: DeviceEvent, frame: CloudFrame) {
            orig.call(this, ev, frame);
            const display = Reflect.get(this, "display") as Display;
            if (ev.kind === "tokens" && Reflect.get(this, "takeoverAt") !== undefined)
              for (const t of tokensOf(frame)) display.push({ piece: t.piece, source: "cloud" });
          },
      ),
  },
  {
    name: "evaluates cloud token IDs without checking them against its vocabulary",
    mustFail: ["device.token.vocab"],
    apply: () => patch(DeviceRun.prototype, "checkTokenIds", () => () => undefined),
  },
  {
    // PDD-SM-001 as PDD-MSG-013 reads since 1.2's clarification: not even the frame's tokens before the ID.
    name: "shows a TokenBatch's tokens before an ID outside its vocabulary",
    mustFail: ["device.token.vocab"],
    apply: () =>
      patch(
        DeviceRun.prototype,
        "check",
        (orig) =>
          function (this: DeviceRun, frame: CloudFrame) {
            const ev = orig.call(this, frame);
            const vocab = (Reflect.get(this, "engine") as Engine).info.vocabSize;
            const tokens = frame.body.case === "tokenBatch" ? frame.body.value.tokens : [];
            const bad = tokens.findIndex((t) => t.id >= vocab);
            const display = Reflect.get(this, "display") as Display;
            if (ev === undefined && bad > 0)
              for (const t of tokens.slice(0, bad)) display.push({ piece: t.piece, source: "cloud" });
            return ev;
          },
      ),
  },
  {
    name: "ignores End{ERROR} (the request stays open)",
    mustFail: ["device.end.error"],
    apply: () =>
      patch(
        DeviceRequestState.prototype,
        "receive",
        (orig) =>
          function (this: DeviceRequestState, frame: CloudFrame): DeviceEvent {
            const b = frame.body;
            if (b.case === "end" && b.value.reason === EndReason.ERROR) return { kind: "ignored" };
            return orig.call(this, frame) as DeviceEvent;
          },
      ),
  },
  {
    name: "ignores a connection Error (reads on after it)",
    mustFail: ["device.connection.error"],
    apply: () =>
      patch(
        CloudLink.prototype,
        "pump",
        (orig) =>
          function (this: CloudLink) {
            Reflect.set(this, "stream", withoutConnectionErrors(Reflect.get(this, "stream") as DeviceStream));
            return orig.call(this);
          },
      ),
  },
  {
    name: "has no model (shows the cloud's tokens, asks for KV, never prefills)",
    mustFail: ["device.kv.bad-crc", "device.kv.bad-sha", "device.kv.unloadable", "device.kv.foreign-model"],
    launcher: (engine) => modelLessDevice(engine, "kv"),
  },
  {
    name: "has no model (shows the cloud's tokens, asks for refinement)",
    mustFail: ["device.refine.text"],
    launcher: (engine) => modelLessDevice(engine, "refine"),
  },
];

const tokensOf = (f: CloudFrame) =>
  f.body.case === "tokenBatch"
    ? f.body.value.tokens
    : f.body.case === "firstToken" && f.body.value.token
      ? [f.body.value.token]
      : [];

/** CloudLink.open whose link reports the device's own model as the cloud's, whatever HelloAck names. */
function trustingOpen(orig: (...a: unknown[]) => unknown) {
  return async (url: string, deviceModel: ModelIdentity, options: unknown) => {
    const link = (await orig.call(CloudLink, url, deviceModel, options)) as CloudLink;
    const helloAck = link.helloAck.bind(link);
    link.helloAck = async (): Promise<HelloAck> => {
      const ack = await helloAck();
      if (ack.cloudModel) ack.cloudModel.modelFingerprint = deviceModel.modelFingerprint;
      return ack;
    };
    return link;
  };
}

/** The stream without the connection-scope Errors the cloud sends: a device that never hears of them. */
function withoutConnectionErrors(stream: DeviceStream): DeviceStream {
  return new Proxy(stream, {
    get(target, key) {
      if (key === Symbol.asyncIterator)
        return async function* () {
          for await (const f of target) if (!(f.body.case === "error" && f.body.value.requestId === 0)) yield f;
        };
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * A device with no model, on whichever binding the suite listens on: it
 * announces the model's fingerprints and KV support, asks for KV (or
 * refinement), and displays whatever tokens the cloud sends until End. It
 * passed every kv.* case before the suite checked answers against its own model.
 */
function modelLessDevice(engine: Engine, ask: "kv" | "refine"): DeviceLauncher {
  return {
    start(o) {
      const outcome = (async () => {
        const shown: Uint8Array[] = [];
        const stream = await connect(o.url, { codec: o.codec, ca: o.caPem });
        try {
          await stream.send(create(DeviceFrameSchema, { body: { case: "hello", value: helloOf(engine) } }));
          await stream.send(create(DeviceFrameSchema, { body: { case: "prefillRequest", value: requestOf(ask) } }));
          for await (const f of stream) {
            if (f.body.case === "firstToken") shown.push(f.body.value.token?.piece ?? new Uint8Array());
            if (f.body.case === "tokenBatch") for (const t of f.body.value.tokens) shown.push(t.piece);
            if (f.body.case === "end") break;
          }
        } catch {
          // A lost connection ends the answer where it is, as End does.
        } finally {
          stream.abort("done");
        }
        return { exitCode: 0, text: Buffer.concat(shown).toString("utf8"), stderr: "" };
      })();
      return { outcome, stop: () => undefined };
    },
  };
}

function helloOf(engine: Engine): MessageInitShape<typeof HelloSchema> {
  return {
    versions: [{ major: 1, minor: 0 }],
    codecs: [Codec.PROTO, Codec.MSGPACK],
    capabilities: { kvChunks: true, kvFormats: [KvFormat.LLAMA_SEQ_STATE], refinement: true },
    deviceModel: {
      modelFingerprint: engine.info.modelFingerprint,
      tokenizerFingerprint: engine.info.tokenizerFingerprint,
    },
  };
}

function requestOf(ask: "kv" | "refine"): MessageInitShape<typeof PrefillRequestSchema> {
  return {
    requestId: 1,
    prompt: { case: "text", value: "Tell me about the quick brown fox and the lazy dog." },
    maxTokens: 12,
    cloudTokenBudget: 8,
    kv:
      ask === "kv"
        ? { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 1 << 20, initialCreditBytes: 8n << 20n }
        : undefined,
    refine: ask === "refine" ? { method: RefineMethod.SURPRISAL_DROP, targetRatio: 0.5 } : undefined,
  };
}
