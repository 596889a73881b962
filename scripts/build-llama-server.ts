/**
 * `npm run build:llama-server [-- --jobs N]`: builds llama.cpp's llama-server
 * from the source node-llama-cpp ships, once per llama.cpp version, into
 * `~/.cache/pd-device/llama-server/<version>/` (see llamaServerCacheRoot()).
 * Progress goes to stderr; the binary's path is the one line on stdout.
 * Exit 1 names the cause (a missing tool, or the failed step and the log's tail).
 */
import { ensureLlamaServer } from "../engine/index.js";

const USAGE = "usage: npm run build:llama-server [-- --jobs N]";

function parseJobs(argv: string[]): number | undefined {
  if (argv.length === 0) return undefined;
  const n = Number(argv[1]);
  if (argv.length !== 2 || argv[0] !== "--jobs" || !Number.isInteger(n) || n < 1) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

const jobs = parseJobs(process.argv.slice(2));
try {
  const found = await ensureLlamaServer({ jobs, log: (line) => process.stderr.write(`llama-server: ${line}\n`) });
  if (!found.built)
    process.stderr.write(
      `llama-server: ${found.version} is already built${found.seconds ? ` (it took ${found.seconds} s)` : ""}\n`,
    );
  process.stdout.write(`${found.binary}\n`);
} catch (e) {
  process.stderr.write(`llama-server: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
