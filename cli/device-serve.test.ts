/** `pdd device serve` flags: refused before anything is loaded. */
import { afterEach, describe, expect, it } from "vitest";
import { API_KEY_ENV, runDeviceServe } from "./device-serve.js";
import { UsageError, type Io } from "./kit.js";

const io: Io = { log: () => undefined, error: () => undefined, write: () => undefined, progress: () => undefined };

afterEach(() => {
  delete process.env[API_KEY_ENV];
});

describe("pdd device serve flags", () => {
  it("a short API key is a usage error, from the flag or from the environment", async () => {
    await expect(runDeviceServe(["--api-key", "short"], io)).rejects.toThrow(UsageError);
    process.env[API_KEY_ENV] = "short";
    await expect(runDeviceServe([], io)).rejects.toThrow(/PDD_SERVE_API_KEY/);
  });

  it("a bad --alias, --parallel or --codec is a usage error", async () => {
    await expect(runDeviceServe(["--alias", "has space"], io)).rejects.toThrow(UsageError);
    await expect(runDeviceServe(["--parallel", "0"], io)).rejects.toThrow(/--parallel/);
    await expect(runDeviceServe(["--codec", "json"], io)).rejects.toThrow(/--codec/);
  });

  it("--no-fallback without --cloud is a usage error", async () => {
    await expect(runDeviceServe(["--no-fallback"], io)).rejects.toThrow(/--no-fallback needs --cloud/);
  });
});
