/**
 * `createLinkedPair()`: a connected device/cloud pair in one process, with no
 * sockets. Frames still go through the codec, so tests of the peers exercise
 * encoding too.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import {
  CloudFrameSchema,
  DeviceFrameSchema,
  ErrorCode,
  type CloudFrame,
  type CodecName,
  type DeviceFrame,
} from "../../proto/index.js";
import type { CloudStream, DeviceStream, SendOptions } from "../message-stream.js";
import { StreamBase } from "../stream-base.js";

class MemoryStream<In, Out> extends StreamBase<In, Out> {
  peer: MemoryStream<Out, In> | undefined;

  constructor(codec: CodecName, inSchema: DescMessage, outSchema: DescMessage, authToken?: string) {
    super({ transport: "memory", codec, inSchema, outSchema, authToken, remoteAddress: "memory" });
  }

  deliver(frame: Uint8Array): void {
    this.receiveBytes(frame);
  }

  protected async writeFrame(frame: Uint8Array, _options: SendOptions | undefined): Promise<void> {
    const copy = frame.slice(); // the receiver must not share the sender's buffer
    queueMicrotask(() => this.peer?.deliver(copy));
  }

  peerClosed(code: ErrorCode, reason: string, abrupt: boolean): void {
    this.finish({ initiator: "peer", abrupt, code, reason });
  }

  protected async closeTransport(code: ErrorCode, reason: string): Promise<void> {
    queueMicrotask(() => this.peer?.peerClosed(code, reason, false));
  }

  protected abortTransport(reason: string): void {
    queueMicrotask(() => this.peer?.peerClosed(ErrorCode.UNSPECIFIED, reason, true));
  }
}

export function createLinkedPair(options: { codec?: CodecName; authToken?: string } = {}): {
  device: DeviceStream;
  cloud: CloudStream;
} {
  const codec = options.codec ?? "proto";
  const device = new MemoryStream<CloudFrame, DeviceFrame>(codec, CloudFrameSchema, DeviceFrameSchema);
  const cloud = new MemoryStream<DeviceFrame, CloudFrame>(
    codec,
    DeviceFrameSchema,
    CloudFrameSchema,
    options.authToken,
  );
  device.peer = cloud;
  cloud.peer = device;
  return { device, cloud };
}
