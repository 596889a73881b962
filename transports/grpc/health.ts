/**
 * `grpc.health.v1.Health` on the gRPC binding, so grpc_health_probe,
 * Kubernetes gRPC probes, grpcurl and load balancers that watch health work
 * without the schema (issue 16). `Check` answers at once; `Watch` sends the
 * status, then each change: SERVING, then NOT_SERVING when the server begins
 * to drain, and ends when the server closes. No credential is needed: a probe
 * has none, and the answer says nothing a port scan does not.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { PdDeviceService } from "../../proto/index.js";
import type { ServingState } from "../message-stream.js";
import {
  type Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
} from "./gen/grpc/health/v1/health_pb.js";

/** The services this server answers for: "" (the server as a whole) and the P/D-Device service. */
const SERVICES = new Set(["", PdDeviceService.typeName]);
/** Open Watch calls at most: each holds a listener, and Watch needs no credential. */
export const MAX_WATCHERS = 256;

/** What Health needs from the server: whether it serves, whether it is closing (Watch calls then end), and changes to either. */
export interface HealthSource extends Pick<ServingState, "onChange"> {
  serving(): boolean;
  closing(): boolean;
}

export function healthService(source: HealthSource): ServiceImpl<typeof Health> {
  let watchers = 0;
  const statusOf = (service: string) =>
    !SERVICES.has(service) ? Status.SERVICE_UNKNOWN : source.serving() ? Status.SERVING : Status.NOT_SERVING;
  return {
    check(req: HealthCheckRequest): HealthCheckResponse {
      const status = statusOf(req.service);
      if (status === Status.SERVICE_UNKNOWN)
        throw new ConnectError(`unknown service ${req.service.slice(0, 100)}`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status });
    },
    async *watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncIterable<HealthCheckResponse> {
      if (watchers >= MAX_WATCHERS)
        throw new ConnectError(`at most ${MAX_WATCHERS} Watch calls at once`, Code.ResourceExhausted);
      watchers++;
      try {
        yield* changes(() => statusOf(req.service), source, ctx.signal);
      } finally {
        watchers--;
      }
    },
  };
}

/** The status now and after each change; done once the server closes (after saying NOT_SERVING) or the call ends. */
async function* changes(
  status: () => Status,
  source: HealthSource,
  signal: AbortSignal,
): AsyncIterable<HealthCheckResponse> {
  let wake: (() => void) | undefined;
  let changed = false;
  const poke = () => {
    changed = true;
    wake?.();
  };
  const off = source.onChange(poke);
  signal.addEventListener("abort", poke, { once: true });
  try {
    let last: Status | undefined;
    for (;;) {
      changed = false;
      const now = status();
      if (now !== last) yield create(HealthCheckResponseSchema, { status: now });
      last = now;
      if (signal.aborted || source.closing()) return;
      // A change that came while the response was being written is not lost: `changed` says so.
      if (!changed) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    off();
    signal.removeEventListener("abort", poke);
  }
}
