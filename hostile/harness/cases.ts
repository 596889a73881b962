/** One case per binding, with the one binding proposed for `npm test` tagged `quick`. */
import { it } from "vitest";
import type { Binding } from "./normal-device.js";

export function eachBinding(
  bindings: readonly Binding[],
  quick: string | undefined,
  name: string,
  fn: (b: Binding) => Promise<void>,
): void {
  for (const b of bindings) it(`over ${b.name}, ${name}`, b.name === quick ? { tags: ["quick"] } : {}, () => fn(b));
}
