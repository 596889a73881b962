/**
 * Public surface of shared/: small helpers with no dependency at all, which
 * every layer may import (proto/ included). Nothing here does I/O.
 */
export { prng } from "./random.js";
