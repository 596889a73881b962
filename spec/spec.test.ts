import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { crc32 } from "node:zlib";
import { equals, fromJson, type DescMessage } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  CloudFrameSchema,
  CloudRequestState,
  createCodec,
  DeviceFrameSchema,
  DeviceRequestState,
  type CloudFrame,
  type DeviceFrame,
  type PrefillRequest,
} from "../proto/index.js";
import { loadExamples, loadRequirements, renderRequirementsIndex, SPEC_DIR, specFiles } from "./index.js";

const root = resolve(SPEC_DIR, "..");
const requirements = loadRequirements();
const examples = loadExamples();
const schemaOf = (role: "device" | "cloud"): DescMessage => (role === "device" ? DeviceFrameSchema : CloudFrameSchema);

describe("requirement IDs", () => {
  it("are indexed in spec/requirements.md exactly as the documents define them", () => {
    const committed = readFileSync(join(SPEC_DIR, "requirements.md"), "utf8");
    expect(
      committed === renderRequirementsIndex(requirements),
      "spec/requirements.md is stale: npm run spec:index",
    ).toBe(true);
  });

  it("are each defined once", () => {
    const seen = new Map<string, string>();
    for (const r of requirements) {
      expect(seen.get(r.id), `${r.id} defined in ${seen.get(r.id)} and ${r.file}`).toBeUndefined();
      seen.set(r.id, r.file);
    }
    expect(requirements.length).toBeGreaterThan(100);
  });

  it("each open their rule, never sit inside parentheses (the index would show a broken rule)", () => {
    const buried = specFiles().flatMap((f) =>
      [...readFileSync(join(SPEC_DIR, f), "utf8").matchAll(/\(\*\*(PDD-[A-Z]+-\d{3})\*\*/g)].map(
        (m) => `${f}: ${m[1]}`,
      ),
    );
    expect(buried).toEqual([]);
  });

  it("ascend within each section, area by area", () => {
    const last = new Map<string, number>();
    const backwards: string[] = [];
    for (const r of requirements) {
      const [, area, n] = /^PDD-([A-Z]+)-(\d{3})$/.exec(r.id)!;
      const key = `${r.file} ${r.section} ${area}`;
      if ((last.get(key) ?? 0) > Number(n)) backwards.push(`${r.file} §${r.section}: ${r.id}`);
      last.set(key, Number(n));
    }
    expect(backwards).toEqual([]);
  });

  it("are counted right in the README", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const stated = /(\d+) requirement IDs/.exec(readme)?.[1];
    expect(Number(stated), "README.md states the requirement count of spec/requirements.md").toBe(requirements.length);
  });

  it("are only cited where they exist, in the spec, the schema and the code", () => {
    const defined = new Set(requirements.map((r) => r.id));
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        if (name === "node_modules" || name === "dist" || name.startsWith(".")) continue;
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.(md|ts|proto)$/.test(name)) files.push(p);
      }
    };
    walk(root);
    const dangling: string[] = [];
    for (const f of files) {
      for (const m of readFileSync(f, "utf8").matchAll(/PDD-[A-Z]+-\d{3}/g)) {
        if (!defined.has(m[0])) dangling.push(`${f.slice(root.length + 1)}: ${m[0]}`);
      }
    }
    expect(dangling).toEqual([]);
  });
});

describe("spec examples", () => {
  it("exist for both roles", () => {
    expect(examples.filter((e) => e.role === "device").length).toBeGreaterThan(5);
    expect(examples.filter((e) => e.role === "cloud").length).toBeGreaterThan(5);
  });

  for (const ex of examples) {
    it(`${ex.file}:${ex.line} is a valid ${ex.role} frame under both codecs`, () => {
      const schema = schemaOf(ex.role);
      const msg = fromJson(schema, ex.json as never, { ignoreUnknownFields: false });
      expect((msg as unknown as DeviceFrame).body.case).toBeDefined();
      for (const name of ["proto", "msgpack"]) {
        const codec = createCodec(name);
        expect(equals(schema, codec.decode(schema, codec.encode(schema, msg)), msg)).toBe(true);
      }
    });
  }
});

describe("the §14 example exchange", () => {
  const frames = examples
    .filter((e) => e.file === "14-example.md")
    .map((e) => ({ role: e.role, frame: fromJson(schemaOf(e.role), e.json as never) as DeviceFrame | CloudFrame }));
  const request = (frames.find((f) => (f.frame as DeviceFrame).body.case === "prefillRequest")!.frame as DeviceFrame)
    .body.value as PrefillRequest;

  it("follows the device's state machine and leaves the answer the text says", () => {
    const state = new DeviceRequestState(request);
    const shown: Uint8Array[] = [];
    let discarded = 0;
    for (const { role, frame } of frames) {
      if (role === "device") {
        const f = frame as DeviceFrame;
        if (
          f.body.case !== "hello" &&
          f.body.case !== "prefillRequest" &&
          f.body.case !== "ping" &&
          f.body.case !== "goodbye"
        )
          state.beforeSend(f);
        continue;
      }
      const f = frame as CloudFrame;
      if (f.body.case === "helloAck" || f.body.case === "pong") continue;
      const ev = state.receive(f);
      if (ev.kind === "tokens") {
        shown.push(...ev.tokens.map((t) => t.piece));
        discarded += ev.discarded;
      }
      if (ev.kind === "end") shown.splice(ev.keep);
    }
    expect(state.phase).toBe("closed");
    expect(discarded).toBe(2);
    expect(Buffer.concat(shown).toString("utf8")).toBe("The P/D-Device method");
  });

  it("follows the cloud's state machine, with frame 14 sent before the takeover was seen", () => {
    const state = new CloudRequestState(1, { maxTokens: request.maxTokens, kvCredit: request.kv!.initialCreditBytes });
    const order = [...frames];
    const takeover = order.findIndex((f) => (f.frame as DeviceFrame).body.case === "takeover");
    [order[takeover], order[takeover + 1]] = [order[takeover + 1]!, order[takeover]!]; // in flight: the cloud sent 14 first
    for (const { role, frame } of order) {
      const b = (frame as DeviceFrame | CloudFrame).body;
      if (role === "cloud" && b.case !== "helloAck" && b.case !== "pong") state.beforeSend(frame as CloudFrame);
      if (
        role === "device" &&
        b.case !== "hello" &&
        b.case !== "prefillRequest" &&
        b.case !== "ping" &&
        b.case !== "goodbye"
      )
        state.receive(frame as DeviceFrame);
    }
    expect(state.phase).toBe("closed");
    expect(state.sent).toBe(8);
  });

  it("carries KV chunks whose CRC-32 and image SHA-256 are correct", () => {
    const chunks = frames.flatMap((f) =>
      (f.frame as CloudFrame).body.case === "kvChunk"
        ? [(f.frame as CloudFrame).body.value as { data: Uint8Array; crc32: number; imageSha256: Uint8Array }]
        : [],
    );
    expect(chunks.length).toBe(2);
    for (const c of chunks) expect(crc32(c.data)).toBe(c.crc32);
    const image = Buffer.concat(chunks.map((c) => c.data));
    expect(createHash("sha256").update(image).digest().equals(Buffer.from(chunks[1]!.imageSha256))).toBe(true);
  });
});
