/**
 * The fuzzers' byte mutator: structure-blind damage to encoded frames, driven
 * by a seeded PRNG so that a failing case replays from its seed.
 */
/** Returns a byte mutator driven by `rand`: flips, inserts, deletes, truncates, splices. */
export function mutator(rand: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const interesting = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xc4, 0xdc, 0xdd, 0xde, 0xdf, 0xcf, 0xd3];
  return function mutate(input: Uint8Array, corpus: readonly Uint8Array[]): Uint8Array {
    let b = Uint8Array.from(input);
    const rounds = 1 + int(4);
    for (let r = 0; r < rounds; r++) {
      switch (int(8)) {
        case 0: // bit flip
          if (b.length) b[int(b.length)]! ^= 1 << int(8);
          break;
        case 1: // interesting byte
          if (b.length) b[int(b.length)] = interesting[int(interesting.length)]!;
          break;
        case 2: {
          // insert random bytes
          const at = int(b.length + 1);
          b = Uint8Array.from([...b.subarray(0, at), ...randomBytes(1 + int(8)), ...b.subarray(at)]);
          break;
        }
        case 3: {
          // delete a range
          const at = int(b.length + 1);
          b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1 + int(8))]);
          break;
        }
        case 4: // truncate
          b = b.subarray(0, int(b.length + 1));
          break;
        case 5: {
          // splice with another corpus entry
          const other = corpus[int(corpus.length)]!;
          const at = int(b.length + 1);
          b = Uint8Array.from([...b.subarray(0, at), ...other.subarray(int(other.length + 1))]);
          break;
        }
        case 6: // overwrite a varint-ish run with max bytes
          for (let i = int(b.length), k = 0; i < b.length && k < 10; i++, k++) b[i] = 0xff;
          break;
        default: // pure random frame
          b = randomBytes(int(64));
      }
    }
    return b;
  };
}
