/**
 * `pdd <command> --help` describes every flag the command parses, with what it
 * does (issue 16: flags were listed bare, --pace and --budget never explained).
 */
import { describe, expect, it } from "vitest";
import { CLOUD_FLAGS } from "./cloud.js";
import { DEVICE_FLAGS } from "./device.js";
import { SERVE_FLAGS } from "./device-serve.js";
import { FLAG_HELP } from "./flag-help.js";
import type { Io } from "./kit.js";
import { main } from "./main.js";
import { MODEL_CREATE_FLAGS } from "./model.js";
import { PLAN_FLAGS } from "./plan.js";

async function help(command: string): Promise<string> {
  let out = "";
  const io: Io = {
    log: (l) => (out += `${l}\n`),
    error: (l) => (out += `${l}\n`),
    write: () => {},
    progress: () => {},
  };
  expect(await main([...command.split(" "), "--help"], io)).toBe(0);
  return out;
}

describe("pdd <command> --help", () => {
  it.each([
    ["cloud", CLOUD_FLAGS],
    ["device", DEVICE_FLAGS],
    ["device serve", SERVE_FLAGS],
    ["plan", PLAN_FLAGS],
    ["model create", MODEL_CREATE_FLAGS],
  ])("describes every flag `pdd %s` parses, each on a line of its own with what it does", async (command, flags) => {
    const text = await help(command);
    const section = text.slice(text.indexOf("\nflags:\n"));
    expect(section.length).toBeGreaterThan(1);
    for (const name of Object.keys(flags)) {
      // The flag starts a line of the flags section (alone or in a group such as "--no-ws, --no-grpc").
      expect(section, `--${name}`).toMatch(
        new RegExp(`\\n {2}(\\S+ )*?--${name}(?![\\w-])[^\\n]*( {2}\\S|\\n {4,}\\S)`),
      );
    }
  });

  it("explains the pacing and budget flags and states their defaults", async () => {
    expect(await help("cloud")).toMatch(
      /--pace X +send answer tokens at X times the device's display rate.*\(default: 2\)/,
    );
    expect(await help("device")).toMatch(
      /--budget N +the most tokens the cloud streams .*\(default: the planner's choice/,
    );
  });

  it("has no entry for a command that does not exist", () => {
    const names = ["cloud", "device", "device serve", "plan", "model create"];
    expect(Object.keys(FLAG_HELP).sort()).toEqual(names.sort());
  });
});
