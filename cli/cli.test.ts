import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const pdd = (...args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", resolve(import.meta.dirname, "pdd.ts"), ...args], {
    encoding: "utf8",
  });

describe("pdd CLI", () => {
  it("refuses a file that is not a model with one typed line and exit status 1", () => {
    const r = pdd(
      "device",
      "--local-only",
      "--prompt",
      "hi",
      "--model",
      resolve(import.meta.dirname, "..", "package.json"),
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[invalid_argument\] .*package\.json is not a usable GGUF model: missing GGUF magic/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("refuses an unknown simulated-engine profile with one typed line and exit status 1", () => {
    const r = pdd("device", "--local-only", "--prompt", "hi", "--model", "sim:mainframe");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /\[invalid_argument\] no simulated-engine profile "mainframe"; there are sim:phone, sim:phone-npu, sim:cloud-gpu, sim:instant/,
    );
  });

  it("answers a prompt on the simulated engine", () => {
    const r = pdd("device", "--local-only", "--prompt", "hi", "--model", "sim:instant", "--max-tokens", "12", "--json");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: "local", deviceTokens: 12 });
  });

  it("decodes a token-batch frame given as hex", () => {
    const r = pdd("decode", "--from", "cloud", "--hex", "220a0807100c1a04080512012e");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      tokenBatch: { requestId: 7, startIndex: 12, tokens: [{ id: 5, piece: "Lg==" }] },
    });
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
    [["device", "--local-only"], /give --prompt TEXT or --prompt-file FILE/],
    [["device", "--prompt", "hi"], /give --cloud URL, or --local-only/],
    [["device", "--prompt", "hi", "--local-only", "--refine", "2"], /--refine must be a ratio in \(0, 1\]/],
    [["device", "--prompt", "hi", "--local-only", "--max-tokens", "many"], /--max-tokens must be an integer/],
    [["device", "--prompt", "hi", "--local-only", "--refine", "0.5", "--refine-min", "0.5"], /give one of them/],
    [
      ["device", "--prompt", "hi", "--local-only", "--refine-min", "0"],
      /--refine-min must be a number above 0 up to 1/,
    ],
    [["cloud", "--pace", "fast"], /--pace must be a number from 0 up to 100/],
    [
      ["bench", "trace", "--trace", "/nonexistent.csv", "--device-profile", "desktop"],
      /--device-profile must be one of phone, phone-npu/,
    ],
    [["cloud", "--sequences", "0"], /--sequences must be between 1 and 256/],
    [["cloud", "--tls-cert", "x.pem"], /--tls-cert and --tls-key go together/],
    [["cloud", "--config", "/nonexistent.json"], /cannot read config file/],
    [["model", "create", "--preset", "huge"], /--preset must be one of tiny, small, tiny-b, bench/],
    [["demo", "--notes", "0"], /--notes must be between 1 and 400/],
    [["conformance", "--target", "ws://127.0.0.1:1/pdd"], /--role must be cloud or device/],
    [["conformance", "--role", "cloud"], /--role cloud needs --target URL/],
    [["conformance", "--role", "device"], /--role device needs --listen URL/],
    [
      ["conformance", "--role", "device", "--listen", "ws://127.0.0.1:0", "--target", "ws://x"],
      /--target is for --role cloud/,
    ],
    [
      ["conformance", "--role", "cloud", "--target", "ws://127.0.0.1:1", "--cert-sha256", "abc"],
      /--cert-sha256 must be 64 hex digits/,
    ],
    [
      ["conformance", "--role", "cloud", "--target", "ws://127.0.0.1:1", "--model", "/nonexistent.gguf"],
      /--model: no such file/,
    ],
    [["conformance", "--role", "cloud", "--target", "ftp://x"], /unsupported scheme ftp:/],
    [
      ["conformance", "--role", "cloud", "--target", "grpc://127.0.0.1:1", "--codec", "msgpack"],
      /only the proto codec/,
    ],
  ])("rejects bad arguments %j with exit status 2 and a one-line reason", (args, message) => {
    const r = pdd(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
