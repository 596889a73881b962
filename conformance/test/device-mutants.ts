/**
 * Deliberately broken devices, beside the broken clouds of mutants.ts: the
 * reference device with one check or step taken out (patched on its classes
 * for the duration of a run), and a device with no model at all. Each must
 * fail the case named for what it breaks.
 * @internal test support
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import {
  Codec,
  CloudFrameSchema,
  createProtoCodec,
  DeviceFrameSchema,
  KvFormat,
  RefineMethod,
  type CloudFrame,
  type KvChunk,
} from "../../proto/index.js";
import type { Engine } from "../../engine/index.js";
import { KvReceiver } from "../../reference-device/kv-receiver.js";
import { LocalPipeline } from "../../reference-device/local-pipeline.js";
import type { DeviceLauncher } from "../runner.js";

/** Replaces `obj[key]` for as long as the returned undo is not called. */
function patch<T extends object>(
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

/**
 * A device with no model over WebSocket: it announces the model's
 * fingerprints and KV support, asks for KV, and displays whatever tokens the
 * cloud sends until End. It passed every kv.* case before the suite checked
 * answers against its own model.
 */
function modelLessDevice(engine: Engine, ask: "kv" | "refine"): DeviceLauncher {
  const codec = createProtoCodec();
  return {
    start(o) {
      const outcome = new Promise<{ exitCode: number; text: string; stderr: string }>((resolve) => {
        const ws = new WebSocket(o.url, ["pdd.v1.proto"]);
        const shown: Uint8Array[] = [];
        const done = () => {
          ws.terminate();
          resolve({ exitCode: 0, text: Buffer.concat(shown).toString("utf8"), stderr: "" });
        };
        const send = (body: Parameters<typeof create<typeof DeviceFrameSchema>>[1]) =>
          ws.send(codec.encode(DeviceFrameSchema, create(DeviceFrameSchema, body)));
        ws.on("open", () => {
          send({
            body: {
              case: "hello",
              value: {
                versions: [{ major: 1, minor: 0 }],
                codecs: [Codec.PROTO, Codec.MSGPACK],
                capabilities: { kvChunks: true, kvFormats: [KvFormat.LLAMA_SEQ_STATE], refinement: true },
                deviceModel: {
                  modelFingerprint: engine.info.modelFingerprint,
                  tokenizerFingerprint: engine.info.tokenizerFingerprint,
                },
              },
            },
          });
          send({
            body: {
              case: "prefillRequest",
              value: {
                requestId: 1,
                prompt: { case: "text", value: "Tell me about the quick brown fox and the lazy dog." },
                maxTokens: 12,
                cloudTokenBudget: 8,
                kv:
                  ask === "kv"
                    ? { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 1 << 20, initialCreditBytes: 8n << 20n }
                    : undefined,
                refine: ask === "refine" ? { method: RefineMethod.SURPRISAL_DROP, targetRatio: 0.5 } : undefined,
              },
            },
          });
        });
        ws.on("message", (b: Buffer) => {
          const f: CloudFrame = codec.decode(CloudFrameSchema, new Uint8Array(b));
          if (f.body.case === "firstToken") shown.push(f.body.value.token?.piece ?? new Uint8Array());
          if (f.body.case === "tokenBatch") for (const t of f.body.value.tokens) shown.push(t.piece);
          if (f.body.case === "end") done();
        });
        ws.on("close", done);
        ws.on("error", done);
      });
      return { outcome, stop: () => undefined };
    },
  };
}
