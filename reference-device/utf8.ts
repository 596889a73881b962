/** UTF-8 helpers for the seam between cloud text and device text. @internal */

/** Length of the longest prefix of `b` that ends on a UTF-8 character boundary. */
export function completeUtf8Prefix(b: Uint8Array): number {
  const i = b.length;
  // Walk back over at most 3 continuation bytes to the lead byte.
  let k = 0;
  while (k < 4 && i - k - 1 >= 0 && (b[i - k - 1]! & 0xc0) === 0x80) k++;
  const leadAt = i - k - 1;
  if (leadAt < 0) return k === 0 ? i : 0;
  const lead = b[leadAt]!;
  const need = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return k + 1 >= need ? i : leadAt;
}
