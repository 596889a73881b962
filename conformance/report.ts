/** Reports: a table for people, JSON and JUnit XML for machines. */
import type { CaseResult } from "./case.js";

export function table(results: CaseResult[]): string {
  const label = { pass: "PASS", fail: "FAIL", "not-offered": "n/o", "wire-only": "WIRE" } as const;
  const rows = results.map((r) => [
    label[r.status],
    `${r.transport}/${r.codec}`,
    r.id,
    r.requirements.join(" "),
    r.status === "pass" ? "" : r.details,
  ]);
  const header = ["result", "binding", "case", "requirements", "details"];
  const widths = header.map((h, i) =>
    Math.min(i === 4 ? 120 : 80, Math.max(h.length, ...rows.map((r) => r[i]!.length))),
  );
  const line = (c: string[]) => c.map((x, i) => x.slice(0, widths[i]).padEnd(widths[i]!)).join("  ");
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
