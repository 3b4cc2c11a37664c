/**
 * A fixed histogram grid over every float: a value's bucket is the top 16 bits of its float32
 * representation (sign, exponent, 7 mantissa bits), made monotonic. Buckets are about 0.8%
 * wide relative to the value, the same grid for every run and every machine, so histograms
 * merge exactly by adding counts, and any bin edges chosen on the grid (a baseline's
 * quantiles) split two histograms alike. Finding a bucket is a shift, not a logarithm: cheap
 * enough to profile every value of every row in the scoring pass.
 */
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Keys run from -32768 to 32767, ordered like the values they hold. */
export const KEYS = 65536;
const OFFSET = 32768;

/** The grid key of a finite value. */
export function keyOf(v: number): number {
  F32[0] = v;
  return keyOfBits(U32[0]!);
}

export function keyOfBits(bits: number): number {
  if ((bits & 0x7fffffff) === 0) return 0; // +0 and -0
  return bits >= 0x80000000 ? -((bits & 0x7fffffff) >>> 16) - 1 : bits >>> 16;
}

/** The smallest value (towards -inf) a key's bucket holds: a bin edge, in value terms. */
export function keyFloor(key: number): number {
  if (key >= 0) {
    U32[0] = key << 16;
    return F32[0]!;
  }
  U32[0] = (((-key - 1) << 16) | 0xffff) >>> 0;
  return -F32[0]!;
}

/** Dense counts over the grid while profiling; turned sparse to store. */
export class GridCounts {
  private readonly counts = new Uint32Array(KEYS);
  private used = false;

  add(v: number): void {
    F32[0] = v;
    this.counts[keyOfBits(U32[0]!) + OFFSET]!++;
    this.used = true;
  }

  /** Adds every value of a float32 array at `start`, `start + stride`, ... (a feature column of row-major data). */
  addFloat32(bits: Uint32Array, start: number, stride: number, rows: number): void {
    const counts = this.counts;
    for (let i = 0, j = start; i < rows; i++, j += stride) {
      const b = bits[j]!;
      counts[((b & 0x7fffffff) === 0 ? 0 : b >= 0x80000000 ? -((b & 0x7fffffff) >>> 16) - 1 : b >>> 16) + OFFSET]!++;
    }
    if (rows > 0) this.used = true;
  }

  /** [key, count] pairs of the non-empty buckets, by key. */
  sparse(): [number, number][] {
    const out: [number, number][] = [];
    if (!this.used) return out;
    const counts = this.counts;
    for (let i = 0; i < KEYS; i++) if (counts[i]) out.push([i - OFFSET, counts[i]!]);
    return out;
  }
}

/** Adds sparse histograms (exactly: integer counts per key). */
export function mergeSparse(lists: [number, number][][]): [number, number][] {
  const sum = new Map<number, number>();
  for (const list of lists) for (const [k, c] of list) sum.set(k, (sum.get(k) ?? 0) + c);
  return [...sum].sort((a, b) => a[0] - b[0]);
}
