/**
 * The `pdd` commands' contract with a shell: exit status 0, 1 for a typed
 * failure (one line naming the cause) and 2 for a usage error, never a stack
 * trace. Most cases call main() in this process with a capturing Io; two
 * spawn the real bin/pdd.js (dist or sources, whichever the launcher picks)
 * and show that help and a protocol-only command load no engine and no peer.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { runPdd } from "./test/run-pdd.js";
import { DEFAULT_TARGET_TPOT_MS } from "../reference-device/index.js";
import { PHONE } from "../engine/index.js";

/** Runs `pdd args…` in this process; what it would print, and its exit status. */
const pdd = runPdd;

/**
 * Spawns bin/pdd.js in a Node whose resolve hook refuses every module whose
 * URL contains one of `refused`: the command fails if it loads one. The
 * package's own folders are matched below its root, so a checkout that sits
 * in a folder named like one of them (a work tree called "bench") is not refused.
 */
function spawnPdd(args: string[], paths: string[]) {
  const root = pathToFileURL(resolve(import.meta.dirname, "..")).href;
  const refused = paths.map((x) => (x.startsWith("/node_modules/") ? x : root + x));
  const hook =
    "export async function resolve(s, c, next) { const r = await next(s, c); " +
    `if (${JSON.stringify(refused)}.some((x) => r.url.includes(x))) throw new Error("refused to load " + r.url); return r; }`;
  const register = `import { register } from "node:module"; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
  const bin = resolve(import.meta.dirname, "..", "bin", "pdd.js");
  return spawnSync(
    process.execPath,
    ["--import", `data:text/javascript,${encodeURIComponent(register)}`, bin, ...args],
    {
      encoding: "utf8",
    },
  );
}

const ENGINE_AND_PEERS = ["/node_modules/node-llama-cpp/", "/engine/", "/reference-cloud/", "/reference-device/"];

describe("the pdd binary", () => {
  it("prints its help without loading a command, proto/, an engine or a peer", () => {
    const r = spawnPdd(["--help"], [...ENGINE_AND_PEERS, "/proto/", "/conformance/", "/bench/"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^pdd \d+\.\d+\.\d+: /);
    expect(r.stdout).toMatch(/\n {2}bench trace {3}simulate a request trace/);
  });

  it("decodes a frame without loading an engine or a peer, and exits 1 with one typed line on a malformed one", () => {
    const r = spawnPdd(["decode", "--from", "cloud", "--hex", "22ff"], ENGINE_AND_PEERS);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^pdd decode: \[malformed_frame\] [^\n]*\n$/);
  });
});

describe("pdd CLI", () => {
  it("refuses a file that is not a model with one typed line and exit status 1", async () => {
    const r = await pdd(
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

  it.each([
    ["not GGUF", resolve(import.meta.dirname, "..", "package.json"), /package\.json is not a usable GGUF model/],
    ["missing", "/nonexistent/model.gguf", /cannot open model file \/nonexistent\/model\.gguf: ENOENT/],
  ])("pdd demo --model refuses a %s file with one typed line and exit status 1", async (_, file, why) => {
    const r = await pdd("demo", "--model", file);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^pdd demo: \[invalid_argument\] /);
    expect(r.stderr).toMatch(why);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe("");
  });

  it("refuses an unknown simulated-engine profile with one typed line and exit status 1", async () => {
    const r = await pdd("device", "--local-only", "--prompt", "hi", "--model", "sim:mainframe");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /\[invalid_argument\] no simulated-engine profile "mainframe"; there are sim:phone, sim:phone-npu, sim:cloud-gpu, sim:instant/,
    );
  });

  it("answers a prompt on the simulated engine", async () => {
    const r = await pdd(
      "device",
      "--local-only",
      "--prompt",
      "hi",
      "--model",
      "sim:instant",
      "--max-tokens",
      "12",
      "--json",
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: "local", deviceTokens: 12 });
  });

  it("plans with the device's own default TPOT and states cloud time as a share of cloud-only", async () => {
    const r = await pdd("plan", "--prompt-tokens", "2000", "--kv-bytes-per-token", "1000", "--explain");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`(target ${DEFAULT_TARGET_TPOT_MS} ms)`);
    // The recompute candidate costs what cloud-only costs: 100%, where it once said "1.0× less".
    expect(r.stdout).toMatch(/ {2}recompute: .*cloud time (\d+) ms \(100% of cloud-only's \1 ms\)/);
    expect(r.stdout).toMatch(/→ KV transfer: .*\((\d|[1-9]\d)% of cloud-only's \d+ ms\)/);
    expect(r.stdout).not.toMatch(/less than/);
  });

  it.each([
    [["--emulate-ms-per-token", "15"], 15, 15],
    [["--device-profile", "phone"], 1000 / PHONE.prefillTokPerS, 1000 / PHONE.decodeTokPerS],
  ])("%j slows each local token by at least its emulated time", async (flags, prefillMs, decodeMs) => {
    const prompt = "emulate a slower device";
    const r = await pdd(
      "device",
      "--local-only",
      "--model",
      "sim:instant",
      "--prompt",
      prompt,
      "--max-tokens",
      "4",
      "--json",
      ...flags,
    );
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as {
      devicePrefilledTokens: number;
      prefillMs: { device: number };
      localDecodeMs: number;
    };
    // Lower bounds only: load makes a run slower, never faster. Node rounds a timer's delay to whole
    // milliseconds and a sleep measured with performance.now() was seen 1.003 ms short: 2 ms of slack.
    expect(report.devicePrefilledTokens).toBeGreaterThan(10);
    expect(report.prefillMs.device).toBeGreaterThanOrEqual(report.devicePrefilledTokens * prefillMs - 2);
    expect(report.localDecodeMs).toBeGreaterThanOrEqual(decodeMs - 2);
  });

  it("decodes a token-batch frame given as hex", async () => {
    const r = await pdd("decode", "--from", "cloud", "--hex", "220b0807100c1a05080512012e");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      tokenBatch: { requestId: 7, startIndex: 12, tokens: [{ id: 5, piece: "Lg==" }] },
    });
  });

  it.each(["proto", "msgpack"])(
    "encodes a frame written as JSON, and pdd decode gives the same JSON back (%s)",
    async (codec) => {
      const frame = {
        prefillRequest: { requestId: 3, text: "The fox.", cloudTokenBudget: 8, targetTpotUs: 40000 },
      };
      const enc = await pdd("encode", "--from", "device", "--codec", codec, "--json", JSON.stringify(frame));
      expect(enc.status).toBe(0);
      expect(enc.stdout).toMatch(/^[0-9a-f]+\n$/);
      const dec = await pdd("decode", "--from", "device", "--codec", codec, "--hex", enc.stdout.trim());
      expect(JSON.parse(dec.stdout)).toEqual(frame);
    },
  );

  it.each([
    ['{"tokenBatch":{"requestId":7,"bogus":1}}', /\[invalid_argument\] not a cloud frame: .*key "bogus" is unknown/],
    ["{tokenBatch", /\[invalid_argument\] the frame is not JSON/],
  ])("refuses to encode %s with one typed line and exit status 1", async (json, message) => {
    const r = await pdd("encode", "--from", "cloud", "--json", json);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  });

  it("reports a malformed frame with its registry code and exit status 1", async () => {
    const r = await pdd("decode", "--from", "cloud", "--hex", "22ff");
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
    [["device", "serve", "--cloud", "http://x"], /--cloud: .*unsupported scheme "http:"/],
    [["fuzz", "--target", "http://127.0.0.1:1/x"], /--target: .*unsupported scheme "http:"/],
    [["device", "serve", "--cloud", "grpc://x:1", "--codec", "msgpack"], /the gRPC binding carries only proto/],
    [["device", "serve", "--emulate-ms-per-token", "5", "--device-profile", "phone"], /not both/],
    [["encode", "--json", "{}"], /--from device\|cloud is required/],
    [["encode", "--from", "cloud"], /give one of --json, --file/],
    [["encode", "--from", "cloud", "--json", "{}", "--format", "octal"], /--format must be one of hex, base64/],
    [["cloud", "--pace", "fast"], /--pace must be a number from 0 up to 100/],
    [
      ["bench", "trace", "--trace", "/nonexistent.csv", "--device-profile", "desktop"],
      /--device-profile must be one of phone, phone-npu/,
    ],
    [["cloud", "--sequences", "0"], /--sequences must be between 1 and 256/],
    [["cloud", "--refine-model", "x.gguf"], /--refine-model needs --engine llama-server/],
    [["cloud", "--backend-api", "openai"], /--backend-api needs --engine llama-server/],
    [
      ["cloud", "--engine", "llama-server", "--backend", "http://127.0.0.1:1", "--backend-api", "vllm"],
      /--backend-api must be native or openai, not "vllm"/,
    ],
    [["cloud", "--tls-cert", "x.pem"], /--tls-cert and --tls-key go together/],
    [["cloud", "--config", "/nonexistent.json"], /cannot read config file/],
    [
      ["model", "create", "--preset", "huge"],
      /--preset must be one of tiny, tiny-eos, tiny-ctx128, small, tiny-b, spec, tiny-nobyte, bench/,
    ],
    [["demo", "--notes", "0"], /--notes must be between 1 and 400/],
    [["demo", "--device", "laptop"], /--device must be one of phone, phone-npu, none/],
    [["demo", "--rtt-ms", "5000"], /--rtt-ms must be between 0 and 2000/],
    [["bench", "trace"], /give one of --trace FILE .* or --shape long-prompt-short-answer\|/],
    [["bench", "trace", "--shape", "round"], /--shape must be one of long-prompt-short-answer, /],
    [["bench", "trace", "--shape", "bursty", "--batching", "tpu"], /--batching must be one of vllm-h100, none/],
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
  ])("rejects bad arguments %j with exit status 2 and a one-line reason", async (args, message) => {
    const r = await pdd(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
