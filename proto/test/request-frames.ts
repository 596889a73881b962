/**
 * Frames of request 1 for the request state machine tests
 * (state/cloud-request.test.ts, state/device-request.test.ts), built with the
 * generated schema, and the check that a step is a protocol violation.
 * @internal test support
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { expect } from "vitest";
import { ErrorCode, PddError } from "../errors.js";
import { CloudFrameSchema, DeviceFrameSchema } from "../gen/pdd/v1/pdd_pb.js";

type CloudBody = MessageInitShape<typeof CloudFrameSchema>["body"];
type DeviceBody = MessageInitShape<typeof DeviceFrameSchema>["body"];
export const cloud = (body: CloudBody) => create(CloudFrameSchema, { body });
export const device = (body: DeviceBody) => create(DeviceFrameSchema, { body });
/** Token `id`, whose piece is "a". */
export const tok = (id: number) => ({ id, piece: Uint8Array.of(0x61) });

/** Accepted with `budget`; a KV or refinement grant only where `grants` names one. */
export const accepted = (budget = 8, grants: { kv?: boolean; refine?: boolean } = {}) =>
  cloud({
    case: "accepted",
    value: {
      requestId: 1,
      cloudTokenBudget: budget,
      kv: grants.kv === undefined ? undefined : { granted: grants.kv },
      refine: grants.refine === undefined ? undefined : { granted: grants.refine },
    },
  });
export const first = () => cloud({ case: "firstToken", value: { requestId: 1, token: tok(0) } });
/** `n` tokens from index `start`. */
export const batch = (start: number, n: number) =>
  cloud({
    case: "tokenBatch",
    value: { requestId: 1, startIndex: start, tokens: Array.from({ length: n }, (_, i) => tok(start + i)) },
  });
export const refined = () => cloud({ case: "refinedPrompt", value: { requestId: 1, text: "x" } });
export const takeover = (index: number) => device({ case: "takeover", value: { requestId: 1, index } });

/** The message of the PROTOCOL_VIOLATION `fn` throws for request 1, without the code prefix. */
export function violationOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PddError);
    expect(e).toMatchObject({ code: ErrorCode.PROTOCOL_VIOLATION, local: "ERR_STATE", requestId: 1 });
    return (e as PddError).rawMessage;
  }
  throw new Error("expected a protocol violation");
}
