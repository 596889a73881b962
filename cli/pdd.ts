/**
 * `pdd`: the one command-line entry point (bin/pdd.js runs it). Each
 * command's wiring is a file of this folder, loaded only when it runs
 * (commands.ts); main.ts dispatches.
 */
import { main } from "./main.js";

const code = await main(process.argv.slice(2));
process.exitCode = code;
// A finished command exits even when a peer keeps a connection open (a cloud
// holding its HTTP/2 session, a silent path): the event loop normally drains
// first, and this timer does not hold it (issue 16). stdout/stderr are
// synchronous on Linux pipes and files, so nothing written is lost.
setTimeout(() => process.exit(code), 1_000).unref();
