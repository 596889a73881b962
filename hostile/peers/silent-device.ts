/**
 * A device that will fall silent: it asks for a long, slowly paced answer,
 * prints "streaming" at its first token, and reads on until the test stops
 * it with SIGSTOP (no FIN, no reset: a phone whose radio went away).
 *
 *   node --import tsx hostile/peers/silent-device.ts URL CODEC CERT_SHA256_HEX
 */
import { create } from "@bufbuild/protobuf";
import { Codec, DeviceFrameSchema } from "../../proto/index.js";
import { connect } from "../../transports/index.js";

const [url = "", codec = "proto", cert = ""] = process.argv.slice(2);
const s = await connect(url, {
  codec: codec as "proto" | "msgpack",
  serverCertificateHashes: cert ? [Buffer.from(cert, "hex")] : undefined,
});
await s.send(
  create(DeviceFrameSchema, {
    body: {
      case: "hello",
      value: { versions: [{ major: 1, minor: 0 }], codecs: [codec === "proto" ? Codec.PROTO : Codec.MSGPACK] },
    },
  }),
);
await s.send(
  create(DeviceFrameSchema, {
    body: {
      case: "prefillRequest",
      value: {
        requestId: 1,
        prompt: { case: "text", value: "The fox." },
        cloudTokenBudget: 256,
        targetTpotUs: 1_000_000,
      },
    },
  }),
);
for await (const f of s) {
  if (f.body.case === "firstToken") process.stdout.write("streaming\n");
  if (f.body.case === "end") break;
}
process.stdout.write("ended\n");
