/**
 * The real-binary suites run only where llama-server is built: without it they say so once and skip,
 * and under PDD_REQUIRE_LLAMA_SERVER=1 (CI) they fail naming the cause, never skipping silently.
 */
import { describe } from "vitest";
import { findLlamaServer } from "../../engine/index.js";

export function llamaServerSuite(): { found: ReturnType<typeof findLlamaServer>; suite: typeof describe } {
  const found = findLlamaServer();
  if (!found) {
    const why = "no llama-server: run `npm run build:llama-server` (about 9 minutes on 2 cores)";
    if (process.env.PDD_REQUIRE_LLAMA_SERVER === "1") throw new Error(`PDD_REQUIRE_LLAMA_SERVER=1 but ${why}`);
    process.stderr.write(`\n*** skipped: ${why} ***\n\n`);
  }
  return { found, suite: found ? describe : (describe.skip as typeof describe) };
}
