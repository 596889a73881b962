/**
 * REFINE_METHOD_SURPRISAL_DROP (spec §8.3, PDD-REF-004): keep the prompt
 * tokens the model found surprising, drop the predictable ones, from the
 * surprisal the prefill already computed. Pure.
 */
export interface RefineParams {
  targetRatio: number;
  minKeepTokens: number;
  keepTailTokens: number;
}

export interface Span {
  start: number;
  end: number;
}

export interface Refinement {
  kept: Span[];
  keptTokens: number;
  ratio: number;
}

/**
 * ⌈r·n⌉ computed the same for every codec (PDD-REF-004): r as the float32 the
 * field is, in millionths (ties up), then integer arithmetic. ⌈0.6·10⌉ in
 * doubles is 7 over protobuf (0.6000000238) and 6 over MessagePack (0.6).
 */
export function keptFor(targetRatio: number, n: number): number {
  const q = Math.round(Math.fround(targetRatio) * 1_000_000);
  return Math.ceil((q * n) / 1_000_000);
}

/** `surprisal[i]` is -ln p(t_i | t_<i); index 0 is ignored (t_0 is always kept). */
export function surprisalDrop(tokens: readonly number[], surprisal: ArrayLike<number>, p: RefineParams): Refinement {
  const n = tokens.length;
  if (n === 0) return { kept: [], keptTokens: 0, ratio: 1 };
  const keep = new Uint8Array(n);
  keep[0] = 1; // t0, which is the BOS token when the model adds one
  for (let i = Math.max(0, n - p.keepTailTokens); i < n; i++) keep[i] = 1;
  const target = Math.min(n, Math.max(p.minKeepTokens, keptFor(p.targetRatio, n)));
  const candidates: number[] = [];
  for (let i = 1; i < n; i++) if (!keep[i]) candidates.push(i);
  // Increasing surprisal; ties by lower index first. NaN (unknown) counts as most surprising.
  const s = (i: number) => (Number.isNaN(surprisal[i]!) ? Number.POSITIVE_INFINITY : surprisal[i]!);
  candidates.sort((a, b) => s(a) - s(b) || a - b);
  let keptCount = n;
  for (const i of candidates) {
    if (keptCount <= target) break;
    keptCount--;
    keep[i] = 2; // dropped
  }
  const kept: Span[] = [];
  for (let i = 0; i < n; i++) {
    if (keep[i] === 2) continue;
    const last = kept[kept.length - 1];
    if (last && last.end === i) last.end = i + 1;
    else kept.push({ start: i, end: i + 1 });
  }
  return { kept, keptTokens: keptCount, ratio: keptCount / n };
}
