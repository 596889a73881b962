/**
 * The package as a user gets it (`npm run test:pack`; it builds, so it is
 * kept out of `npm test`'s time budget). It builds dist/ into a staging copy
 * of what package.json's `files` ships, packs that with `npm pack`, unpacks
 * the tarball into an empty folder's node_modules, and there, under plain
 * Node (no tsx):
 *
 * - imports every entry point of `exports`, none of which may load
 *   node-llama-cpp, and finds a path outside `exports` refused;
 * - type-checks a consumer that imports every entry (the `types` conditions);
 * - runs the packed `pdd` binary, and the README's two examples.
 *
 * The dependencies are links to this repository's node_modules, one per
 * entry of `dependencies` and nothing else, so a package the code needs but
 * does not declare fails to resolve. `npm install --offline <tarball>` would
 * need the registry's package documents, which `npm ci` does not cache: it
 * fails offline (ENOTCACHED), and CI reaches no registry but npm's.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  files: string[];
  dependencies: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
};
const ENTRIES = Object.keys(PKG.exports).filter((e) => e !== "./package.json");
const specifier = (entry: string) => (entry === "." ? PKG.name : `${PKG.name}/${entry.slice(2)}`);

let work: string;
/** The empty project the package is installed into. */
let app: string;

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Builds dist/ into a copy of what `files` ships and packs it; returns the tarball. */
function pack(): string {
  const stage = join(work, "stage");
  mkdirSync(stage);
  run(
    process.execPath,
    [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", join(stage, "dist")],
    ROOT,
  );
  cpSync(join(ROOT, "package.json"), join(stage, "package.json"));
  for (const pattern of PKG.files) {
    if (pattern === "dist") continue; // built above
    const dir = pattern.replace(/\/\*.*$/, ""); // "spec/*.md": copy spec/, let npm pick the files
    cpSync(join(ROOT, dir), join(stage, dir), { recursive: true });
  }
  const [packed] = JSON.parse(
    run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], stage),
  ) as {
    filename: string;
  }[];
  return join(work, packed!.filename);
}

/** Unpacks the tarball into `app`'s node_modules and links the declared dependencies. */
function install(tarball: string): void {
  const modules = join(app, "node_modules");
  const target = join(modules, PKG.name);
  mkdirSync(target, { recursive: true });
  run("tar", ["-xzf", tarball, "-C", target, "--strip-components=1"], work);
  for (const dep of Object.keys(PKG.dependencies)) {
    mkdirSync(dirname(join(modules, dep)), { recursive: true });
    symlinkSync(join(ROOT, "node_modules", dep), join(modules, dep), "dir");
  }
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "pdd-pack-"));
  app = join(work, "app");
  mkdirSync(app);
  install(pack());
}, 180_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A Node under `app` whose resolve hook refuses node-llama-cpp. */
function nodeInApp(args: string[]) {
  const hook =
    `export async function resolve(s, c, next) { if (s === "node-llama-cpp") throw new Error("node-llama-cpp ` +
    `imported by " + c.parentURL); return next(s, c); }`;
  const register = `import { register } from "node:module"; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
  return spawnSync(process.execPath, ["--import", `data:text/javascript,${encodeURIComponent(register)}`, ...args], {
    cwd: app,
    encoding: "utf8",
  });
}

describe(`the packed ${PKG.name}`, () => {
  it("is what the README's library section quotes", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    for (const f of ["cloud.mjs", "device.mjs"])
      expect(readme, `README.md quotes examples/${f}`).toContain(
        `\`\`\`js\n${readFileSync(join(ROOT, "examples", f), "utf8")}\`\`\``,
      );
  });

  it("imports every entry point under plain Node, without loading node-llama-cpp", () => {
    const script = `
      const out = {};
      for (const s of ${JSON.stringify(ENTRIES.map(specifier))}) out[s] = Object.keys(await import(s)).length;
      console.log(JSON.stringify(out));`;
    const r = nodeInApp(["--input-type=module", "-e", script]);
    expect(r.stderr).toBe("");
    const exported = JSON.parse(r.stdout) as Record<string, number>;
    expect(Object.keys(exported)).toEqual(ENTRIES.map(specifier));
    for (const [s, n] of Object.entries(exported)) expect(n, s).toBeGreaterThan(0);
  });

  it("has the types of every entry point, and refuses a path outside exports", () => {
    for (const entry of ENTRIES) {
      const target = PKG.exports[entry] as { types: string };
      expect(existsSync(join(app, "node_modules", PKG.name, target.types)), target.types).toBe(true);
    }
    const r = nodeInApp(["--input-type=module", "-e", `await import("${PKG.name}/dist/proto/index.js")`]);
    expect(r.stderr).toMatch(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });

  it("type-checks a consumer that imports every entry point", () => {
    mkdirSync(join(app, "node_modules", "@types"), { recursive: true });
    symlinkSync(join(ROOT, "node_modules/@types/node"), join(app, "node_modules/@types/node"), "dir");
    const consumer = [
      `import { PdDevice, startCloud, PddError, ErrorCode, createCodec, DeviceFrameSchema } from "${PKG.name}";`,
      ...ENTRIES.filter((e) => e !== ".").map((e, i) => `import * as entry${i} from "${specifier(e)}";`),
      `const device: Promise<PdDevice> = PdDevice.create({ modelPath: "sim:phone" });`,
      `const cloud: ReturnType<typeof startCloud> = startCloud({ model: "sim:cloud-gpu" });`,
      `const error: PddError = new PddError(ErrorCode.CANCELLED, "x");`,
      `const bytes: Uint8Array = createCodec("proto").encode(DeviceFrameSchema, { $typeName: "pdd.v1.DeviceFrame", body: { case: undefined } });`,
      `export const all = [device, cloud, error, bytes, ${ENTRIES.filter((e) => e !== ".")
        .map((_, i) => `entry${i}`)
        .join(", ")}];`,
    ].join("\n");
    writeFileSync(join(app, "consumer.ts"), consumer);
    const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
    const flags = [
      "--noEmit",
      "--strict",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
    ];
    const r = spawnSync(process.execPath, [tsc, ...flags, "--skipLibCheck", "--types", "node", "consumer.ts"], {
      cwd: app,
      encoding: "utf8",
    });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("runs the packed pdd binary from its dist/", () => {
    const r = nodeInApp([
      join(app, "node_modules", PKG.name, "bin/pdd.js"),
      "decode",
      "--from",
      "cloud",
      "--hex",
      "220b0807100c1a05080512012e",
    ]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ tokenBatch: { requestId: 7 } });
  });

  it("runs the README's examples: a cloud, and a device that takes over from it", async () => {
    for (const f of ["cloud.mjs", "device.mjs"]) cpSync(join(ROOT, "examples", f), join(app, f));
    const cloud = spawn(process.execPath, ["cloud.mjs", "127.0.0.1:0"], { cwd: app });
    let cloudLog = ""; // its JSON log lines, shown if it fails
    cloud.stderr.on("data", (b: Buffer) => (cloudLog += b.toString()));
    const exited = new Promise<number | null>((r) => cloud.once("exit", r));
    try {
      const lines = createInterface({ input: cloud.stdout });
      let url: string | undefined;
      for await (const line of lines) {
        url = /^cloud listening on (\S+)$/.exec(line)?.[1];
        if (url) break;
      }
      expect(url, cloudLog).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\//);
      const device = spawnSync(process.execPath, ["device.mjs", url!], { cwd: app, encoding: "utf8" });
      expect(device.stderr).toBe("");
      expect(device.status).toBe(0);
      expect(device.stdout).toMatch(/\nmode pd: first token after \d+ ms, [1-9]\d* from the cloud\n$/);
    } finally {
      cloud.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});
