/**
 * `pdd encode`: the inverse of `pdd decode`. It turns a frame written as
 * proto3 JSON (what `pdd decode` prints) into its bytes, so that an
 * implementer can craft a frame to send to their peer, or to compare with
 * what their encoder writes.
 */
import { writeFileSync } from "node:fs";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { choiceFlag, parseFlags, readFileFlag, UsageError, type Run } from "./kit.js";
import { CloudFrameSchema, CODEC_NAMES, createCodec, DeviceFrameSchema, ErrorCode, PddError } from "../proto/index.js";

export const ENCODE_FLAGS = {
  from: { type: "string" },
  codec: { type: "string" },
  json: { type: "string" },
  file: { type: "string" },
  format: { type: "string" },
  out: { type: "string" },
} as const;

export const runEncode: Run = async (argv, io) => {
  const { values } = parseFlags(argv, ENCODE_FLAGS);
  if (values.from === undefined)
    throw new UsageError("--from device|cloud is required: it says which envelope the frame is");
  const from = choiceFlag("from", values.from, ["device", "cloud"] as const, "device");
  const codec = createCodec(choiceFlag("codec", values.codec, CODEC_NAMES, "proto"));
  const format = choiceFlag("format", values.format, ["hex", "base64"] as const, "hex");
  if ((values.json === undefined) === (values.file === undefined)) throw new UsageError("give one of --json, --file");
  const text = values.json ?? readFileFlag("file", values.file)!;
  const schema = from === "device" ? DeviceFrameSchema : CloudFrameSchema;
  let bytes: Uint8Array;
  try {
    bytes = codec.encode(schema, fromJson(schema, parseJson(text)));
  } catch (e) {
    const err =
      e instanceof PddError
        ? e
        : new PddError(ErrorCode.INVALID_ARGUMENT, `not a ${from} frame: ${(e as Error).message}`);
    io.error(`pdd encode: ${err.message}`);
    return 1;
  }
  if (values.out === undefined) {
    io.log(Buffer.from(bytes).toString(format));
    return 0;
  }
  try {
    writeFileSync(values.out, bytes);
  } catch (e) {
    throw new UsageError(`cannot write --out: ${(e as Error).message}`);
  }
  return 0;
};

function parseJson(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new PddError(ErrorCode.INVALID_ARGUMENT, `the frame is not JSON: ${(e as Error).message}`);
  }
}
