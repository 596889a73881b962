import { describe, expect, it } from "vitest";
import type { CaseResult } from "./case.js";
import { table } from "./report.js";

const result = (over: Partial<CaseResult>): CaseResult => ({
  id: "cloud.request.deadline",
  title: "",
  requirements: ["PDD-REQ-006", "PDD-ORD-001", "PDD-ORD-002", "PDD-IDX-001", "PDD-IDX-002", "PDD-IDX-003"],
  transport: "webtransport",
  codec: "msgpack",
  status: "fail",
  details: `expected ${"a very long statement of what the spec requires, ".repeat(4)}; observed Error{2, ERROR_CODE_PROMPT_TOO_LONG}`,
  ms: 12,
  log: [],
  ...over,
});

describe("the conformance table", () => {
  it("fits 120 columns and shows what was observed (the error code) before what was expected", () => {
    const lines = table([result({}), result({ status: "pass", id: "cloud.hello" })]).split("\n");
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(120);
    expect(lines[1]).toContain("observed Error{2, ERROR_CODE_PROMPT_TOO_LONG}");
    expect(lines[2]).toMatch(/^PASS\s+webtransport\/msgpack\s+cloud\.hello$/);
  });
});
