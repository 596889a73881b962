import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const pdd = (...args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", resolve(import.meta.dirname, "pdd.ts"), ...args], { encoding: "utf8" });

describe("pdd CLI", () => {
  it("decodes a token-batch frame given as hex", () => {
    const r = pdd("decode", "--from", "cloud", "--hex", "220a0807100c1a04080512012e");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ tokenBatch: { requestId: 7, startIndex: 12, tokens: [{ id: 5, piece: "Lg==" }] } });
  });

  it("reports a malformed frame with its registry code and exit status 1", () => {
    const r = pdd("decode", "--from", "cloud", "--hex", "22ff");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[malformed_frame\]/);
  });

  it.each([
    [["decode", "--from", "cloud", "--bogus"], /Unknown option/],
    [["decode", "--from", "sideways", "--hex", "00"], /--from must be one of device, cloud/],
    [["decode", "--from", "cloud", "--hex", "abc"], /even number of hex digits/],
    [["decode", "--from", "cloud", "--codec", "json", "--hex", "00"], /--codec must be one of proto, msgpack/],
    [["frobnicate"], /unknown command "frobnicate"/],
  ])("rejects bad arguments %j with exit status 2 and a one-line reason", (args, message) => {
    const r = pdd(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
