/** `npm run conformance:coverage`: regenerates conformance/COVERAGE.md. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { coverage, renderCoverage } from "./coverage.js";

const rows = coverage();
writeFileSync(join(import.meta.dirname, "COVERAGE.md"), renderCoverage(rows));
const must = rows.filter((r) => r.level === "MUST");
console.log(
  `conformance/COVERAGE.md: ${must.filter((r) => r.cases.length > 0).length}/${must.length} MUST requirements covered`,
);
