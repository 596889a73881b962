/**
 * Errors of the OpenAI-compatible endpoint, in OpenAI's shape:
 * `{"error": {"message", "type", "param", "code"}}` with the HTTP status
 * OpenAI uses for the same case, so SDKs raise their usual error classes
 * (BadRequestError, AuthenticationError, NotFoundError, …). @internal
 */
import type { ServerResponse } from "node:http";
import { ErrorCode, PddError } from "../proto/index.js";

export type ApiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "server_error"
  | "overloaded_error";

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** A request parameter the endpoint does not implement: a 400 naming it, never a silent drop. */
  static unsupported(param: string, what: string): ApiError {
    return new ApiError(
      400,
      `${param}: ${what} is not supported by pdd device serve`,
      undefined,
      param,
      "unsupported_parameter",
    );
  }

  static invalid(param: string | null, message: string): ApiError {
    return new ApiError(400, param ? `${param}: ${message}` : message, undefined, param, "invalid_value");
  }

  static modelNotFound(model: string): ApiError {
    return new ApiError(
      404,
      `The model \`${model.slice(0, 200)}\` does not exist or you do not have access to it.`,
      "invalid_request_error",
      "model",
      "model_not_found",
    );
  }

  static contextExceeded(param: string, message: string): ApiError {
    return new ApiError(400, message, "invalid_request_error", param, "context_length_exceeded");
  }

  /**
   * Anything thrown that is not an ApiError: a 500 whose message names the cause, or a 503 when the
   * cause is a cloud that cannot serve (`--no-fallback`), which a client may retry.
   */
  static from(e: unknown): ApiError {
    if (e instanceof ApiError) return e;
    const message = (e instanceof Error ? e.message : String(e)).slice(0, 1024);
    if (e instanceof PddError && e.code === ErrorCode.UNAVAILABLE)
      return new ApiError(503, message, "server_error", null, "service_unavailable");
    return new ApiError(500, message, "server_error", null, "internal_error");
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

export function sendError(res: ServerResponse, e: ApiError): void {
  sendJson(res, e.status, e.body, e.headers);
}
