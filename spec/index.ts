/**
 * Machine-readable views of the normative Markdown: the requirement IDs (for
 * the index and the conformance coverage table) and the example frames (test
 * fixtures). The Markdown stays the single source.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Directory of the spec's Markdown files (also when running from dist/). */
export const SPEC_DIR: string = fileURLToPath(
  new URL(import.meta.url.includes("/dist/") ? "../../spec/" : "./", import.meta.url),
);

export type Level = "MUST" | "SHOULD" | "MAY";

export interface Requirement {
  id: string;
  level: Level;
  file: string;
  section: string;
  /** The rule's text, Markdown, on one line. */
  text: string;
}

export interface SpecExample {
  file: string;
  line: number;
  role: "device" | "cloud";
  json: unknown;
}

const ID = /\*\*(PDD-[A-Z]+-\d{3})\*\*/g;
const GENERATED = new Set(["requirements.md"]);

export function specFiles(dir: string = SPEC_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".md") && !GENERATED.has(f) && f !== "README.md" && f !== "CHANGELOG.md")
    .sort();
}

function levelOf(text: string): Level | undefined {
  if (/\b(MUST|MUST NOT|REQUIRED|SHALL|SHALL NOT)\b/.test(text)) return "MUST";
  if (/\b(SHOULD|SHOULD NOT|RECOMMENDED|NOT RECOMMENDED)\b/.test(text)) return "SHOULD";
  if (/\b(MAY|OPTIONAL)\b/.test(text)) return "MAY";
  return undefined;
}

/** Every requirement defined (in bold) in the spec, in document order. Throws on a rule without a BCP 14 keyword. */
export function loadRequirements(dir: string = SPEC_DIR): Requirement[] {
  const out: Requirement[] = [];
  const problems: string[] = [];
  for (const file of specFiles(dir)) {
    const md = readFileSync(join(dir, file), "utf8").replace(/```[\s\S]*?```/g, "");
    let section = "";
    for (const para of md.split(/\n\s*\n/)) {
      const heading = para.match(/^#+\s+(.*)$/m);
      if (heading) section = heading[1]!.trim();
      const ids = [...para.matchAll(ID)];
      if (ids.length === 0) continue;
      for (let i = 0; i < ids.length; i++) {
        const from = i === 0 ? 0 : ids[i]!.index!;
        const to = i + 1 < ids.length ? ids[i + 1]!.index! : para.length;
        const text = para.slice(from, to).replace(/\s+/g, " ").trim();
        const level = levelOf(text.replace(ID, ""));
        if (!level) {
          problems.push(`${file}: ${ids[i]![1]} has no BCP 14 keyword: ${text}`);
          continue;
        }
        out.push({ id: ids[i]![1]!, level, file, section, text });
      }
    }
  }
  if (problems.length > 0) throw new Error(problems.join("\n"));
  return out;
}

/** Every `pdd:device` / `pdd:cloud` example block, parsed as JSON. */
export function loadExamples(dir: string = SPEC_DIR): SpecExample[] {
  const out: SpecExample[] = [];
  for (const file of [...specFiles(dir), "README.md"]) {
    const md = readFileSync(join(dir, file), "utf8");
    for (const m of md.matchAll(/```json pdd:(device|cloud)\n([\s\S]*?)```/g)) {
      const line = md.slice(0, m.index).split("\n").length;
      out.push({ file, line, role: m[1] as "device" | "cloud", json: JSON.parse(m[2]!) });
    }
  }
  return out;
}

/** The content of spec/requirements.md. */
export function renderRequirementsIndex(reqs: Requirement[]): string {
  const counts = { MUST: 0, SHOULD: 0, MAY: 0 };
  for (const r of reqs) counts[r.level]++;
  const lines = [
    "# Index of requirements",
    "",
    "Generated from the specification by `npm run spec:index`; do not edit. A test fails when it is stale.",
    "",
    `${reqs.length} requirements: ${counts.MUST} MUST, ${counts.SHOULD} SHOULD, ${counts.MAY} MAY.`,
    "",
    "| ID | level | where | rule |",
    "|---|---|---|---|",
  ];
  for (const r of reqs) {
    const rule = r.text.replace(ID, "").trim().replace(/\|/g, "\\|");
    const short = rule.length > 160 ? `${rule.slice(0, 157)}…` : rule;
    lines.push(
      `| ${r.id} | ${r.level} | [${r.file.replace(/\.md$/, "")}](${r.file}) §${r.section.split(" ")[0]} | ${short} |`,
    );
  }
  return `${lines.join("\n")}\n`;
}
