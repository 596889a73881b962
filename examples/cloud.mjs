// A reference cloud. "sim:cloud-gpu" is the simulated engine (a cloud GPU's
// published speed, no model file); give the path of a GGUF file to serve a model.
import { startCloud } from "pd-device";

const cloud = await startCloud({
  model: "sim:cloud-gpu",
  listen: { ws: process.argv[2] ?? "127.0.0.1:4100" },
});
console.log(`cloud listening on ${cloud.urls.ws}`);
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => cloud.close());
