/**
 * The schema's versioning discipline: buf lint, buf breaking against the
 * committed v1 baseline, generated code that matches the schema, and a stock
 * protoc (when the machine has one) compiling the file as it is.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const buf = join(root, "node_modules/.bin/buf");
const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { cwd: root, encoding: "utf8" });

describe("pdd.v1 schema toolchain", () => {
  const out = mkdtempSync(join(tmpdir(), "pdd-gen-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("passes buf lint", () => {
    const r = run(buf, ["lint"]);
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("has no breaking change against the committed v1 baseline", () => {
    const r = run(buf, ["breaking", "--against", "proto/baseline/pdd-v1.binpb"]);
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("has committed generated code identical to a fresh buf generate", () => {
    const r = run(buf, ["generate", "--output", out]);
    expect(r.stderr).toBe("");
    const fresh = readFileSync(join(out, "proto/gen/pdd/v1/pdd_pb.ts"), "utf8");
    const committed = readFileSync(join(root, "proto/gen/pdd/v1/pdd_pb.ts"), "utf8");
    expect(fresh === committed, "proto/gen is stale: run `npm run generate` and commit").toBe(true);
  });

  const protoc = spawnSync("protoc", ["--version"]).status === 0;
  it.skipIf(!protoc)("compiles with the stock protoc exactly as documented", () => {
    execFileSync("sh", ["-c", "protoc --descriptor_set_out=/dev/null proto/pdd/v1/*.proto"], { cwd: root });
  });
});
