/**
 * The layers, enforced (README "Layout and layers", STYLE.md items 1 and 10).
 * A small import scanner (the TypeScript parser, already a dependency) reads
 * every source file's static, re-export and dynamic imports and checks:
 *
 * - each folder imports only the folders below it (RULES);
 * - an import into another folder goes through that folder's index.ts;
 * - conformance/ takes from our code only what does not decide a verdict: the
 *   .proto file's location, a test certificate and the WebTransport library
 *   loader; never a codec, binding, state machine, engine or peer;
 * - proto/ and shared/ stay pure: no I/O module, no network library;
 * - node-llama-cpp is loaded only by engine/engine.ts, and only at run time.
 *
 * Tests (*.test.ts, hostile/, spec/vectors/) and their helper folders (test/) are exempt from the
 * folder rules: a test of the device needs a cloud to talk to, a transport
 * test a codec fixture, and that is what they are for. They do not ship
 * (tsconfig.build.json excludes them), so they cannot create a dependency a
 * user would see. The table printed below counts non-test imports only.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = import.meta.dirname;

/** Who may import whom; a folder always may import itself. */
const RULES: Record<string, readonly string[]> = {
  spec: [],
  shared: [],
  proto: ["shared", "spec"],
  transports: ["proto", "shared"],
  engine: ["proto", "shared"],
  "reference-cloud": ["proto", "transports", "engine", "shared"],
  "reference-device": ["proto", "transports", "engine", "shared"],
  conformance: ["spec", "shared", "proto", "transports"],
  bench: ["spec", "shared", "proto", "transports", "engine", "reference-cloud", "reference-device", "conformance"],
  cli: [
    "spec",
    "shared",
    "proto",
    "transports",
    "engine",
    "reference-cloud",
    "reference-device",
    "conformance",
    "bench",
  ],
  // The package's "." entry: the peers and what they are built on; never the conformance suite.
  "index.ts": ["shared", "proto", "transports", "engine", "reference-cloud", "reference-device"],
  // Examples use the package by its name, as a user does (examples/pack.check.ts runs them).
  examples: [],
};
const FOLDERS = Object.keys(RULES);

/** The only names conformance/ may take from our implementation, and why each cannot bias a verdict. */
const CONFORMANCE_MAY_USE: Record<string, readonly string[]> = {
  // Where the .proto is; the suite loads it with protobufjs, not with our generated code.
  proto: ["PROTO_FILE"],
  // A certificate for its own servers, and the WebTransport library (not our binding over it).
  transports: ["createSelfSignedCertificate", "certificateSha256", "loadWebTransport"],
};

/** Packages proto/ may use: the schema runtime and the two codecs' libraries. node:url only locates the .proto. */
const PURE_PROTO_IMPORTS = [
  "@bufbuild/protobuf",
  "@bufbuild/protobuf/codegenv2",
  "@bufbuild/protobuf/wire",
  "msgpackr",
  "zod",
  "node:url",
];

interface Import {
  /** Repository-relative path of the importing file. */
  file: string;
  specifier: string;
  /** Resolved repository-relative target for relative imports. */
  target: string | undefined;
  /** Named bindings, when the import lists them ("*" for a namespace or bare import). */
  names: string[];
  typeOnly: boolean;
  dynamic: boolean;
}

function sourceFiles(dir: string): string[] {
  if (dir.endsWith(".ts")) return [dir];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" || e.name === "dist" ? [] : sourceFiles(p);
    return /\.m?[tj]s$/.test(e.name) ? [p] : [];
  });
}

const isTest = (file: string) =>
  /\.(test|check|hostile)\.ts$/.test(file) ||
  file.split("/").includes("test") ||
  // The hostile-peer suite and the spec's vector generator are tests by another name: they start peers and engines.
  file.startsWith("hostile/") ||
  file.startsWith("spec/vectors/");
const folderOf = (file: string) => file.split("/")[0]!;

/** Names a dynamic import binds: `const { a, b } = await import("x")`. */
function dynamicNames(call: ts.Node): string[] {
  const decl = call.parent?.kind === ts.SyntaxKind.AwaitExpression ? call.parent.parent : call.parent;
  if (decl && ts.isVariableDeclaration(decl) && ts.isObjectBindingPattern(decl.name))
    return decl.name.elements.map((e) => (e.propertyName ?? e.name).getText());
  return ["*"];
}

function importsOf(path: string): Import[] {
  const file = relative(ROOT, path).split(sep).join("/");
  const src = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const add = (specifier: string, names: string[], typeOnly: boolean, dynamic: boolean) => {
    const target = specifier.startsWith(".")
      ? relative(ROOT, resolve(ROOT, file, "..", specifier))
          .split(sep)
          .join("/")
      : undefined;
    found.push({ file, specifier, target, names, typeOnly, dynamic });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const bindings = clause?.namedBindings;
      const names =
        bindings && ts.isNamedImports(bindings)
          ? bindings.elements.map((e) => (e.propertyName ?? e.name).text)
          : clause?.name
            ? ["default"]
            : ["*"];
      const typeOnly =
        clause?.isTypeOnly === true ||
        (names.length > 0 &&
          bindings !== undefined &&
          ts.isNamedImports(bindings) &&
          bindings.elements.every((e) => e.isTypeOnly));
      add(node.moduleSpecifier.text, names, typeOnly, false);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const names =
        node.exportClause && ts.isNamedExports(node.exportClause)
          ? node.exportClause.elements.map((e) => (e.propertyName ?? e.name).text)
          : ["*"];
      add(node.moduleSpecifier.text, names, node.isTypeOnly, false);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      add(node.arguments[0].text, dynamicNames(node), false, true);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      add(node.argument.literal.text, ["*"], true, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return found;
}

const ALL: Import[] = FOLDERS.flatMap((f) => sourceFiles(join(ROOT, f))).flatMap(importsOf);
/** The files `npm run build` compiles into dist/: what the package ships. */
const BUILT = new Set(
  ts
    .getParsedCommandLineOfConfigFile(
      join(ROOT, "tsconfig.build.json"),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => {
          throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
        },
      },
    )!
    .fileNames.map((f) => relative(ROOT, f).split(sep).join("/")),
);
const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  dependencies: Record<string, string>;
};
const SHIPPED = ALL.filter((i) => !isTest(i.file));
/** Imports from one of our folders into another. */
const CROSSING = SHIPPED.filter((i) => i.target !== undefined && folderOf(i.target) !== folderOf(i.file));

/** Import counts, importer (row) to imported folder (column). */
function dependencyTable(): string {
  const count = (from: string, to: string) =>
    CROSSING.filter((i) => folderOf(i.file) === from && folderOf(i.target!) === to).length;
  const short = (f: string) => f.replace("reference-", "ref-");
  const width = Math.max(...FOLDERS.map((f) => short(f).length));
  const header = `${"".padEnd(width)} | ${FOLDERS.map((f) => short(f).padStart(width)).join(" ")}`;
  const rows = FOLDERS.map(
    (from) =>
      `${short(from).padEnd(width)} | ${FOLDERS.map((to) => (from === to ? "·" : String(count(from, to) || "")).padStart(width)).join(" ")}`,
  );
  return [header, "-".repeat(header.length), ...rows].join("\n");
}

const describeImport = (i: Import) => `${i.file} imports ${i.specifier}`;

describe("layers", () => {
  it("scans every folder's sources, and the peers and their folders are there", () => {
    for (const f of FOLDERS) expect(SHIPPED.some((i) => folderOf(i.file) === f) || f === "shared").toBe(true);
    console.log(`import edges between folders (non-test files; row imports column):\n${dependencyTable()}`);
    expect(CROSSING.length).toBeGreaterThan(50);
  });

  it("each folder imports only the folders below it", () => {
    const bad = CROSSING.filter((i) => !RULES[folderOf(i.file)]!.includes(folderOf(i.target!)));
    expect(bad.map(describeImport)).toEqual([]);
  });

  it("neither peer imports the other", () => {
    const peers = ["reference-cloud", "reference-device"];
    const across = CROSSING.filter((i) => peers.includes(folderOf(i.file)) && peers.includes(folderOf(i.target!)));
    expect(across.map(describeImport)).toEqual([]);
  });

  it("an import into another folder goes through that folder's index.ts", () => {
    const bad = CROSSING.filter((i) => i.target !== `${folderOf(i.target!)}/index.js`);
    expect(bad.map(describeImport)).toEqual([]);
  });

  it("conformance/ takes from our implementation only what cannot decide a verdict", () => {
    const bad = CROSSING.filter((i) => folderOf(i.file) === "conformance").flatMap((i) => {
      const allowed = CONFORMANCE_MAY_USE[folderOf(i.target!)];
      if (!allowed) return []; // spec/ and shared/: checked by the folder rules
      return i.names.filter((n) => !allowed.includes(n)).map((n) => `${describeImport(i)}: ${n}`);
    });
    expect(bad).toEqual([]);
  });

  it("proto/ and shared/ do no I/O: proto/ uses only its schema and codec libraries, shared/ nothing", () => {
    const external = (f: string) => SHIPPED.filter((i) => folderOf(i.file) === f && i.target === undefined);
    expect(
      external("proto")
        .filter((i) => !PURE_PROTO_IMPORTS.includes(i.specifier))
        .map(describeImport),
    ).toEqual([]);
    expect(external("shared").map(describeImport)).toEqual([]);
    expect(
      external("proto")
        .filter((i) => i.specifier === "node:url")
        .map((i) => i.file),
    ).toEqual(["proto/index.ts"]);
  });

  it("every package a shipped file loads is a declared dependency, not a devDependency", () => {
    const packageOf = (s: string) =>
      s
        .split("/")
        .slice(0, s.startsWith("@") ? 2 : 1)
        .join("/");
    const undeclared = ALL.filter(
      (i) =>
        BUILT.has(i.file) &&
        i.target === undefined &&
        !i.typeOnly &&
        !i.specifier.startsWith("node:") &&
        PACKAGE.dependencies[packageOf(i.specifier)] === undefined,
    );
    expect(BUILT.size).toBeGreaterThan(100);
    expect(undeclared.map(describeImport)).toEqual([]);
  });

  it("the engine interface imports nothing, and only engine/engine.ts loads node-llama-cpp, at run time", () => {
    expect(ALL.filter((i) => i.file === "engine/inference.ts").map(describeImport)).toEqual([]);
    const llama = SHIPPED.filter((i) => i.specifier === "node-llama-cpp");
    // Other engine files may name node-llama-cpp's types (serial-sampling.ts wraps a context); only engine.ts loads it.
    expect([...new Set(llama.filter((i) => !i.typeOnly).map((i) => i.file))]).toEqual(["engine/engine.ts"]);
    expect(llama.filter((i) => !i.file.startsWith("engine/")).map(describeImport)).toEqual([]);
    expect(llama.filter((i) => !i.typeOnly && !i.dynamic).map(describeImport)).toEqual([]);
  });
});
