/** Public surface of conformance/: the suite, its reports and its coverage. */
export { runConformance, type RunOptions } from "./runner.js";
export { table, junit } from "./report.js";
export { coverage, renderCoverage, ALL_CASES } from "./coverage.js";
export type { Case, CaseResult, Status } from "./case.js";
export { conformanceCommand } from "./cli.js";
