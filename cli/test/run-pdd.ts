/** Runs the `pdd` command in this process, as the tests' stand-in for a terminal: its exit status and output. */
import type { Io } from "../kit.js";
import { main } from "../main.js";

export interface PddRun {
  status: number;
  stdout: string;
  stderr: string;
}

export async function runPdd(...args: string[]): Promise<PddRun> {
  let stdout = "";
  let stderr = "";
  const io: Io = {
    log: (line) => (stdout += `${line}\n`),
    error: (line) => (stderr += `${line}\n`),
    write: (text) => (stdout += text),
    progress: () => undefined,
  };
  const status = await main(args, io);
  return { status, stdout, stderr };
}
