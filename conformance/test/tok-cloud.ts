/**
 * The reference cloud in its own process, for PDD-TOK-002: a text its
 * vocabulary cannot tokenize must not reach llama.cpp, whose byte_to_token
 * throws std::out_of_range and aborts the process. With --without-check, the
 * broken cloud: the engine's check taken out. Prints its WebSocket URL, then
 * serves until killed (or until it dies).
 * Usage: node --import tsx tok-cloud.ts MODEL [--without-check]
 * @internal test support
 */
import { Engine } from "../../engine/index.js";
import { startCloud } from "../../reference-cloud/index.js";

const modelPath = process.argv[2]!;
const engine = await Engine.load({ modelPath, threads: 1, sequences: 2 });
// The mutation: no list of untokenizable characters, so tokenize() goes straight to llama.cpp.
if (process.argv.includes("--without-check")) Reflect.set(engine, "untokenizable", undefined);
const cloud = await startCloud(
  { model: modelPath, threads: 1, logLevel: "silent", listen: { ws: "127.0.0.1:0" } },
  { engine },
);
process.stdout.write(`${cloud.urls.ws}\n`);
