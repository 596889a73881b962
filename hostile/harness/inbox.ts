/** A device stream's frames, kept by request, with waits on them (for attacks made of legal frames). */
import type { CloudFrame } from "../../proto/index.js";
import type { DeviceStream } from "../../transports/index.js";
import { pollUntil } from "./wait.js";

export class FrameLog {
  readonly frames: CloudFrame[] = [];
  closed = false;

  constructor(readonly stream: DeviceStream) {
    void (async () => {
      try {
        for await (const f of stream) this.frames.push(f);
      } catch {
        // a connection error ends the log
      }
      this.closed = true;
    })();
  }

  of(id: number, kind: CloudFrame["body"]["case"]): CloudFrame | undefined {
    return this.frames.find(
      (f) => f.body.case === kind && (f.body.value as { requestId?: number } | undefined)?.requestId === id,
    );
  }

  /** Waits for the first frame of `kind` (of any request, or none: HelloAck, Pong). */
  async first(kind: CloudFrame["body"]["case"], ms: number): Promise<CloudFrame | undefined> {
    const find = () => this.frames.find((f) => f.body.case === kind);
    return (await pollUntil(find, (f) => f !== undefined, ms, 20)).value;
  }

  /** Waits for request `id`'s frame of `kind`; undefined after `ms`. */
  async wait(id: number, kind: CloudFrame["body"]["case"], ms: number): Promise<CloudFrame | undefined> {
    return (
      await pollUntil(
        () => this.of(id, kind),
        (f) => f !== undefined,
        ms,
        20,
      )
    ).value;
  }
}
