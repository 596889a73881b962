/**
 * How a device under test treats the end of the cloud's part of a request:
 * after `End` (reason `ERROR`) the request is `CLOSED`, so nothing the cloud
 * sends for it later may reach the display (PDD-SM-002), and the tokens
 * before it stand (PDD-MSG-014). The suite breaks PDD-ORD-003 on purpose
 * here: tokens after the End are what makes a device that ignored the End
 * visible, as they would be from a cloud whose End overtook a batch.
 */
import type { Case } from "./case.js";
import { accept, drain, end, expectAnswer, greet, nextRequest, sendTokens, tokenAt } from "./device-cases.js";

export const DEVICE_END_CASES: Case[] = [
  {
    id: "device.end.error",
    title: "treats End ERROR as the end of the request: keeps the tokens before it, shows none sent after it",
    role: "device",
    requirements: ["PDD-SM-002", "PDD-MSG-014"],
    answer: true,
    async run(p, env) {
      const s = await nextRequest(p, await greet(p));
      accept(p, s, { budget: 32 });
      sendTokens(p, s, 3);
      // No request Error first: an unknown EndReason reads as ERROR (PDD-VER-008), so End alone happens.
      end(p, s, "END_REASON_ERROR", 3);
      // Markers for the ended request: a device still taking them shows one.
      p.send({ tokenBatch: { requestId: s.id, startIndex: 3, tokens: [tokenAt(50), tokenAt(51), tokenAt(52)] } });
      await drain(p, s);
      await expectAnswer(env, s, 3, "PDD-SM-002");
    },
  },
];
