import { ErrorCode, PddError } from "../errors.js";

/** @internal A PROTOCOL_VIOLATION that names the rule broken. */
export function violation(requirement: string, message: string, requestId = 0): PddError {
  return new PddError(ErrorCode.PROTOCOL_VIOLATION, `${requirement}: ${message}`, { local: "ERR_STATE", requestId });
}
