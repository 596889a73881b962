/** The reference cloud for serve-scaling.bench.ts, in its own process: sends its WebSocket URL, stops on SIGTERM. */
import { startCloud } from "../reference-cloud/index.js";

const cloud = await startCloud({ model: process.argv[2], threads: 2, logLevel: "warn", listen: { ws: "127.0.0.1:0" } });
process.send?.(cloud.urls.ws);
process.once("SIGTERM", () => void cloud.close({ drainSeconds: 0 }).then(() => process.exit(0)));
