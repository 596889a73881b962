/**
 * `pdd`: the one command-line entry point (bin/pdd.js runs it). Each
 * command's wiring is a file of this folder, loaded only when it runs
 * (commands.ts); main.ts dispatches.
 */
import { main } from "./main.js";

process.exitCode = await main(process.argv.slice(2));
