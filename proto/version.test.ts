import { describe, expect, it } from "vitest";
import { negotiateVersion } from "./version.js";

describe("version negotiation", () => {
  it("picks the highest common major at the lower minor", () => {
    expect(
      negotiateVersion(
        [
          { major: 1, minor: 3 },
          { major: 2, minor: 0 },
        ],
        [{ major: 1, minor: 1 }],
      ),
    ).toEqual({ major: 1, minor: 1 });
    expect(
      negotiateVersion(
        [
          { major: 1, minor: 0 },
          { major: 2, minor: 4 },
        ],
        [
          { major: 1, minor: 2 },
          { major: 2, minor: 1 },
        ],
      ),
    ).toEqual({ major: 2, minor: 1 });
  });

  it("finds nothing when no major is shared, which the cloud answers with UNSUPPORTED_VERSION", () => {
    expect(negotiateVersion([{ major: 7, minor: 0 }], [{ major: 1, minor: 0 }])).toBeUndefined();
    expect(negotiateVersion([], [{ major: 1, minor: 0 }])).toBeUndefined();
  });
});
