/**
 * PDD-TOK-002: a text the cloud's vocabulary cannot tokenize (Appendix C.2
 * step 7: a character with no token whose UTF-8 bytes lack a byte token). The
 * suite finds such a character in the cloud's GGUF (--model), with its own
 * reader; a vocabulary with all 256 byte tokens has none, and the case is not
 * offered.
 */
import type { Case } from "./case.js";
import { expectRequestError, expectThat, prefill } from "./cloud-cases.js";
import { ggufFingerprints } from "./fingerprints.js";
import { field, NotOffered } from "./probe.js";

const hex = (b: number) => b.toString(16).toUpperCase().padStart(2, "0");

/** A character of UTF-8 that contains byte `b`, or undefined for the bytes UTF-8 never uses. */
function charWithByte(b: number): string | undefined {
  const bytes =
    b < 0x80
      ? [b]
      : b < 0xc0
        ? [0xc2, b]
        : b < 0xc2
          ? undefined
          : b < 0xe0
            ? [b, 0x80]
            : b < 0xf0
              ? [b, b === 0xe0 ? 0xa0 : 0x80, 0x80]
              : b < 0xf5
                ? [b, b === 0xf0 ? 0x90 : 0x80, 0x80, 0x80]
                : undefined;
  return bytes && Buffer.from(bytes).toString("utf8");
}

/** A character that a SentencePiece vocabulary with these token texts cannot tokenize (C.2 step 7). */
export function untokenizableChar(tokens: Buffer[]): string | undefined {
  const texts = new Set(tokens.map((t) => t.toString("latin1")));
  const has = (s: string) => texts.has(Buffer.from(s, "utf8").toString("latin1"));
  for (let b = 0; b < 256; b++) {
    if (has(`<0x${hex(b)}>`) || (b > 0 && b < 0x80 && has(String.fromCharCode(b)))) continue;
    const c = charWithByte(b);
    if (c !== undefined && c !== " " && !has(c)) return c;
  }
  return undefined;
}

export const CLOUD_TOK_CASES: Case[] = [
  {
    id: "cloud.text.untokenizable",
    title: "refuses a text prompt its vocabulary cannot tokenize with INVALID_ARGUMENT, and serves the next",
    role: "cloud",
    requirements: ["PDD-TOK-002"],
    async run(p, env) {
      if (!env.modelFile) throw new NotOffered("no --model: the suite cannot see the cloud's vocabulary");
      const gguf = ggufFingerprints(env.modelFile);
      if (gguf.vocabulary.tokenizerModel !== "llama")
        throw new NotOffered("the cloud's tokenizer is not SentencePiece (Appendix C.2)");
      const c = untokenizableChar(gguf.vocabulary.tokens);
      if (c === undefined) throw new NotOffered("every character has a token or byte tokens in the cloud's vocabulary");
      await p.hello();
      const fp = field<Uint8Array>(p.ack!, "helloAck.cloudModel.modelFingerprint");
      if (!gguf.model.equals(Buffer.from(fp ?? []))) throw new NotOffered("the cloud does not serve the --model file");
      const code = `U+${c.codePointAt(0)!.toString(16).toUpperCase()}`;
      p.send(prefill(1, { text: `Tell me about ${c}.` }));
      await expectRequestError(p, 1, "ERROR_CODE_INVALID_ARGUMENT", `PDD-TOK-002, ${code}`);
      // A request error (not a connection error, nor a crash): the connection serves the next request.
      p.send(prefill(2, { cloudTokenBudget: 1 }));
      const frames = await p.collect(2);
      expectThat(
        frames[0]?.body === "accepted" && field(frames[frames.length - 1]!, "end.reason") !== "END_REASON_ERROR",
        "the next request on the connection served: the refusal is a request error (PDD-TOK-002)",
        frames.map((f) => f.body).join(", "),
      );
    },
  },
];
