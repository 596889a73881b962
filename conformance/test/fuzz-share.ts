/**
 * How many fuzz cases `npm test` runs per binding: a share sized for CI.
 * Long runs: `npm run fuzz -- --cases N` (the cloud), or this suite with
 * PDD_FUZZ_CASES=N (the cloud and the device, with the heap check).
 * @internal test support
 */
export const FUZZ_CASES = ((): number => {
  const n = Number(process.env.PDD_FUZZ_CASES ?? 2000);
  if (!Number.isInteger(n) || n < 100 || n % 100 !== 0)
    throw new Error(
      `PDD_FUZZ_CASES must be a multiple of 100 (a device run takes 100), not "${process.env.PDD_FUZZ_CASES}"`,
    );
  return n;
})();

/** The msgpack codec shares the binding's connection code, so it gets a quarter of the cases. */
export const FUZZ_CASES_MSGPACK = Math.ceil(FUZZ_CASES / 400) * 100;

/**
 * A test's timeout, a hang detector only: unloaded, the slowest binding takes ~4 ms a case;
 * beside two busy processes, 10x that. At least 3 minutes.
 */
export const FUZZ_TIMEOUT_MS = Math.max(180_000, FUZZ_CASES * 60);
