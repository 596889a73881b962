// A device: the cloud prefills the prompt and streams the first tokens while
// the device prefills it too, then the device takes over and decodes the rest.
import { PdDevice } from "pd-device";

const device = await PdDevice.create({
  cloud: process.argv[2] ?? "ws://127.0.0.1:4100/pdd",
  modelPath: "sim:phone", // the simulated phone engine; or the path of a GGUF file
});
try {
  const report = await device.generate("Explain P/D-Device in one sentence.", {
    maxTokens: 48,
    onText: (text) => process.stdout.write(text),
  });
  console.log(
    `\nmode ${report.mode}: first token after ${report.ttftMs.toFixed(0)} ms, ${report.cloudTokens} from the cloud`,
  );
} finally {
  await device.close();
}
