// Runs the TypeScript module named in workerData.entry inside a worker thread.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
