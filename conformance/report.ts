/** Reports: a table for people, JSON and JUnit XML for machines. */
import type { CaseResult } from "./case.js";

/** How each status reads in the table and the progress lines. */
export const STATUS_LABEL = { pass: "PASS", fail: "FAIL", "not-offered": "n/o", "wire-only": "WIRE" } as const;

/** Table lines fit a 120-column terminal; the requirement IDs and full details are in --json, --junit, --verbose. */
const TABLE_WIDTH = 120;

/**
 * A result's details for the table: what was observed first (it holds the
 * error code or the value that was wrong), then what was expected.
 */
function shortDetails(r: CaseResult): string {
  if (r.status === "pass") return "";
  const m = /^expected (.*); observed (.*)$/s.exec(r.details);
  return (m ? `observed ${m[2]} — expected ${m[1]}` : r.details).replace(/\s+/g, " ");
}

export function table(results: CaseResult[]): string {
  const rows = results.map((r) => [STATUS_LABEL[r.status], `${r.transport}/${r.codec}`, r.id, shortDetails(r)]);
  const header = ["result", "binding", "case", "details"];
  const widths = header.slice(0, 3).map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const room = Math.max(20, TABLE_WIDTH - widths.reduce((a, w) => a + w + 2, 0));
  const cut = (x: string) => (x.length > room ? `${x.slice(0, room - 1)}…` : x);
  const line = (c: string[]) => [...c.slice(0, 3).map((x, i) => x.padEnd(widths[i]!)), cut(c[3]!)].join("  ").trimEnd();
  const counts = { pass: 0, fail: 0, "not-offered": 0, "wire-only": 0 };
  for (const r of results) counts[r.status]++;
  const wire = counts["wire-only"]
    ? `, ${counts["wire-only"]} checked on the wire only (the answer is observable with --exec)`
    : "";
  return [
    line(header),
    ...rows.map(line),
    "",
    `${counts.pass} passed, ${counts.fail} failed, ${counts["not-offered"]} not offered${wire}`,
  ].join("\n");
}

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function junit(results: CaseResult[]): string {
  const failures = results.filter((r) => r.status === "fail").length;
  const skipped = results.filter((r) => r.status === "not-offered").length;
  const cases = results.map((r) => {
    const name = xml(`${r.id} [${r.transport}/${r.codec}]`);
    const props = `<properties>${r.requirements.map((q) => `<property name="requirement" value="${q}"/>`).join("")}</properties>`;
    const body =
      r.status === "fail"
        ? `<failure message="${xml(r.details)}">${xml(r.log.join("\n"))}</failure>`
        : r.status === "not-offered"
          ? `<skipped message="not offered: ${xml(r.details)}"/>`
          : "";
    return `  <testcase classname="pdd.conformance" name="${name}" time="${(r.ms / 1000).toFixed(3)}">${props}${body}</testcase>`;
  });
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="pdd-conformance" tests="${results.length}" ` +
    `failures="${failures}" skipped="${skipped}">\n${cases.join("\n")}\n</testsuite>\n`
  );
}

/** A run that could not reach its target: one errored test case, so CI shows why nothing ran. */
export function junitUnreachable(message: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="pdd-conformance" tests="1" failures="0" errors="1">\n` +
    `  <testcase classname="pdd.conformance" name="target reachable"><error message="${xml(message)}"/></testcase>\n` +
    "</testsuite>\n"
  );
}
