/**
 * A fixed histogram grid over every float: a value's bucket is the top 15 bits of its float32
 * representation (sign, exponent, 6 mantissa bits), made monotonic. Buckets are about 1.6%
 * wide relative to the value, the same grid for every run and every machine, so histograms
 * merge exactly by adding counts, and any bin edges chosen on the grid (a baseline's
 * quantiles) split two histograms alike. Finding a bucket is a shift, not a logarithm: cheap
 * enough to profile every value of every row in the scoring pass.
 */
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Keys run from -16384 to 16383, ordered like the values they hold. */
export const SHIFT = 17;
export const KEYS = 1 << (32 - SHIFT);
const OFFSET = KEYS / 2;

export function keyOfBits(bits: number): number {
  return bits >= 0x80000000 ? -((bits & 0x7fffffff) >>> SHIFT) - 1 : bits >>> SHIFT;
}

/** The smallest value (towards -inf) a key's bucket holds: a bin edge, in value terms. */
export function keyFloor(key: number): number {
  if (key >= 0) {
    U32[0] = key << SHIFT;
    return F32[0]!;
  }
  U32[0] = (((-key - 1) << SHIFT) | ((1 << SHIFT) - 1)) >>> 0;
  return -F32[0]!;
}

/** Dense counts over the grid while profiling; turned sparse to store. */
export class GridCounts {
  // Made on first use: a column that never gets a value costs nothing.
  private counts: Uint32Array | null = null;
  private used = false;

  add(v: number): void {
    F32[0] = v;
    (this.counts ??= new Uint32Array(KEYS))[keyOfBits(U32[0]!) + OFFSET]!++;
    this.used = true;
  }

  /** [key, count] pairs of the non-empty buckets, by key. */
  sparse(): [number, number][] {
    const out: [number, number][] = [];
    const counts = this.counts;
    if (!this.used || !counts) return out;
    for (let i = 0; i < KEYS; i++) if (counts[i]) out.push([i - OFFSET, counts[i]!]);
    return out;
  }
}

/** Dense counts to add sparse histograms into, one at a time (bounded memory, exact). */
export class GridSum {
  private readonly counts = new Float64Array(KEYS);

  add(hist: Iterable<readonly [number, number]>): void {
    for (const [k, c] of hist) this.counts[k + OFFSET]! += c;
  }

  addOne(key: number, count: number): void {
    this.counts[key + OFFSET]! += count;
  }

  sparse(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < KEYS; i++) if (this.counts[i]) out.push([i - OFFSET, this.counts[i]!]);
    return out;
  }
}
