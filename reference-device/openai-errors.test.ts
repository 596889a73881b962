/**
 * The status a thrown failure gets on the OpenAI endpoint: a cloud that
 * cannot serve under `--no-fallback` is a retryable 503, not a 500 (a
 * stranger's check of the README met the 500).
 */
import { describe, expect, it } from "vitest";
import { ErrorCode, PddError } from "../proto/index.js";
import { ApiError } from "./openai-errors.js";

describe("ApiError.from", () => {
  it("a cloud that cannot serve (UNAVAILABLE) is 503 service_unavailable, its cause in the message", () => {
    const e = ApiError.from(new PddError(ErrorCode.UNAVAILABLE, "cloud not usable, refused: ECONNREFUSED"));
    expect(e.status).toBe(503);
    expect(e.code).toBe("service_unavailable");
    expect(e.message).toContain("refused: ECONNREFUSED");
  });

  it("any other failure is 500 internal_error", () => {
    expect(ApiError.from(new PddError(ErrorCode.INTERNAL, "bug")).status).toBe(500);
    expect(ApiError.from(new Error("bug")).status).toBe(500);
  });
});
