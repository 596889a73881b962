/**
 * `pdd decode`: decodes one frame and prints its proto3 JSON form, so that an
 * implementer can see what their bytes mean to the reference codecs.
 */
import { readFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import { choiceFlag, parseFlags, UsageError, type Run } from "./kit.js";
import { CloudFrameSchema, CODEC_NAMES, createCodec, DeviceFrameSchema, PddError } from "../proto/index.js";

export const runDecode: Run = async (argv, io) => {
  const { values } = parseFlags(argv, {
    from: { type: "string" },
    codec: { type: "string" },
    hex: { type: "string" },
    base64: { type: "string" },
    file: { type: "string" },
  });
  const from = choiceFlag("from", values.from, ["device", "cloud"] as const, "device");
  if (values.from === undefined)
    throw new UsageError("--from device|cloud is required: it says which envelope the frame is");
  const codec = createCodec(choiceFlag("codec", values.codec, CODEC_NAMES, "proto"));
  const given = [values.hex, values.base64, values.file].filter((v) => v !== undefined);
  if (given.length !== 1) throw new UsageError("give exactly one of --hex, --base64, --file");
  let bytes: Uint8Array;
  if (values.hex !== undefined) {
    const clean = values.hex.replace(/\s+/g, "");
    if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new UsageError("--hex must be an even number of hex digits");
    bytes = Buffer.from(clean, "hex");
  } else if (values.base64 !== undefined) {
    bytes = Buffer.from(values.base64, "base64");
  } else {
    try {
      bytes = readFileSync(values.file!);
    } catch (e) {
      throw new UsageError(`cannot read --file: ${(e as Error).message}`);
    }
  }
  const schema = from === "device" ? DeviceFrameSchema : CloudFrameSchema;
  try {
    const frame = codec.decode(schema, bytes);
    io.log(JSON.stringify(toJson(schema, frame), null, 2));
    return 0;
  } catch (e) {
    const err = PddError.from(e);
    io.error(`pdd decode: ${err.message}`);
    return 1;
  }
};
