/**
 * Device frames as bytes, through the conformance suite's own encoder
 * (protobufjs / msgpackr): attacks never depend on the peers' codecs.
 */
import { encodeDevice, type Codec, type Frame } from "../../conformance/wire.js";
import { PROMPT } from "./normal-device.js";

export const codecName = (c: Codec): string => (c === "proto" ? "CODEC_PROTO" : "CODEC_MSGPACK");

export const hello = (codec: Codec, extra: Record<string, unknown> = {}): Uint8Array =>
  encodeDevice({ hello: { versions: [{ major: 1, minor: 0 }], codecs: [codecName(codec)], ...extra } }, codec);

export const prefill = (codec: Codec, requestId: number, extra: Record<string, unknown> = {}): Uint8Array =>
  encodeDevice({ prefillRequest: { requestId, text: PROMPT, cloudTokenBudget: 16, ...extra } }, codec, true);

export const ping = (codec: Codec, nonce = 1): Uint8Array => encodeDevice({ ping: { nonce: String(nonce) } }, codec);

export const cancel = (codec: Codec, requestId: number): Uint8Array =>
  encodeDevice({ cancel: { requestId, code: "ERROR_CODE_CANCELLED" } }, codec);

export const frame = (codec: Codec, f: Frame, unchecked = false): Uint8Array => encodeDevice(f, codec, unchecked);
