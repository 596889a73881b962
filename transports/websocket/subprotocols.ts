import type { CodecName } from "../../proto/index.js";

/** WebSocket subprotocol names (spec PDD-WS-001, §9.1). */
export const SUBPROTOCOLS = ["pdd.v1.proto", "pdd.v1.msgpack"] as const;

export function subprotocolFor(codec: CodecName): string {
  return `pdd.v1.${codec}`;
}

export function codecFromSubprotocol(p: string): CodecName | undefined {
  return p === "pdd.v1.proto" ? "proto" : p === "pdd.v1.msgpack" ? "msgpack" : undefined;
}
