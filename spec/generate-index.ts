/** `npm run spec:index`: regenerates spec/requirements.md. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadRequirements, renderRequirementsIndex, SPEC_DIR } from "./index.js";

const reqs = loadRequirements();
writeFileSync(join(SPEC_DIR, "requirements.md"), renderRequirementsIndex(reqs));
console.log(`spec/requirements.md: ${reqs.length} requirements`);
