import type { InferResult } from '../inference/protocol.js';
import type { OutputMapping } from '../models/output.js';
import { GridCounts, KEYS, SHIFT } from './grid.js';

/**
 * The profile of one column of a run (a feature, the stored score, one element of the stored
 * outputs, or the label): what drift is measured on. Everything in it merges exactly: counts
 * and sums add, min/max combine, the histogram is integer counts on a fixed grid (grid.ts).
 */
export interface ColumnProfile {
  /** `f3`, `score`, `outputs[2]`, `label`. */
  column: string;
  kind: 'feature' | 'output' | 'label';
  /** Values profiled (rows scored). */
  count: number;
  /** Rows whose value was NULL, NaN or infinite (rejected rows, for a feature). */
  nulls: number;
  sum: number;
  sumSq: number;
  min: number | null;
  max: number | null;
  /** [grid key, count], by key. */
  hist: [number, number][];
  /** Label counts, by label (up to MAX_CLASSES; the rest under OTHER). */
  classes?: [string, number][];
}

/** What the source reader counted of each feature: every value it read, NULLs apart. */
export interface ReaderStats {
  count: number;
  nulls: number;
  sum: number;
  sumSq: number;
  min: number;
  max: number;
}

/** Elements of `outputs` profiled at most, and distinct labels counted at most. */
export const MAX_OUTPUTS = 32;
export const MAX_CLASSES = 100;
export const OTHER = '(other)';

class Moments {
  count = 0;
  nulls = 0;
  sum = 0;
  sumSq = 0;
  min = Infinity;
  max = -Infinity;
  readonly grid = new GridCounts();

  add(v: number): void {
    if (!Number.isFinite(v)) {
      this.nulls++;
      return;
    }
    this.count++;
    this.sum += v;
    this.sumSq += v * v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    this.grid.add(v);
  }

  profile(column: string, kind: ColumnProfile['kind']): ColumnProfile {
    return {
      column,
      kind,
      count: this.count,
      nulls: this.nulls,
      sum: this.sum,
      sumSq: this.sumSq,
      min: this.count ? this.min : null,
      max: this.count ? this.max : null,
      hist: this.grid.sparse(),
    };
  }
}

/**
 * Zeroed count arrays kept between chunks: a chunk of 32 features needs 4 MiB of counts, and
 * allocating that anew for every chunk made the heap, not the data, set the peak memory.
 */
const spareGrids: Uint32Array[] = [];

function takeGrids(length: number): Uint32Array {
  const i = spareGrids.findIndex((g) => g.length === length);
  return i >= 0 ? spareGrids.splice(i, 1)[0]! : new Uint32Array(length);
}

/** A float32's slot in a feature's dense counts: its bits as an int32, shifted (see DenseFeatures). */
const SLOT_F32 = new Float32Array(1);
const SLOT_I32 = new Int32Array(SLOT_F32.buffer);
const HALF = KEYS / 2;

/** How feature histograms were read from the grid: between min and max, or whole (a fallback). */
export const gridReads = { bounded: 0, whole: 0 };

function slotOf(v: number): number {
  SLOT_F32[0] = v;
  return (SLOT_I32[0]! >> SHIFT) + HALF;
}

/**
 * Grid counts of every float32 feature at once. The batch is row-major (the ONNX tensor's
 * buffer): one pass in memory order, and the bucket is the float's bits shifted (an int32
 * view), about 1 ns a value. The moments come from the reader, which saw every value already.
 */
class DenseFeatures {
  private readonly grids: Uint32Array;
  /** Values counted per feature: every row of every batch has every feature. */
  private rows = 0;

  constructor(private readonly width: number) {
    this.grids = takeGrids(width * KEYS);
  }

  /** Gives the counts back for the next chunk (a chunk's profile is read before this). */
  release(): void {
    spareGrids.push(this.grids.fill(0));
    if (spareGrids.length > 4) spareGrids.shift();
  }

  add(values: Float32Array, rows: number): void {
    const { width, grids } = this;
    const bits = new Int32Array(values.buffer, values.byteOffset, rows * width);
    // Locals, not the imported bindings: the loop runs once per value.
    const keys = KEYS;
    const shift = SHIFT;
    for (let r = 0, i = 0; r < rows; r++) {
      for (let f = 0, base = HALF; f < width; f++, i++, base += keys) grids[base + (bits[i]! >> shift)]!++;
    }
    this.rows += rows;
  }

  /**
   * Feature f's histogram, with the shifted int32 turned into the monotonic grid key. With the
   * reader's min and max only the slots between them are read (a few hundred of 32,768); the
   * counts found must add up to every value counted, else the whole grid is read.
   */
  hist(f: number, range: { min: number; max: number } | null): [number, number][] {
    const grid = this.grids.subarray(f * KEYS, (f + 1) * KEYS);
    if (range && this.rows > 0) {
      const { min, max } = range;
      // Negative floats (and -0) sit below HALF, larger magnitudes higher; positive ones above.
      const neg: [number, number] = [max < 0 ? slotOf(max) : 0, min < 0 ? slotOf(min) : 0];
      const pos: [number, number] = [min > 0 ? slotOf(min) : HALF, max >= 0 ? slotOf(max === 0 ? 0 : max) : HALF - 1];
      const out = this.read(grid, neg, pos);
      if (out.total === this.rows) {
        gridReads.bounded++;
        return out.hist;
      }
    }
    gridReads.whole++;
    return this.read(grid, [0, HALF - 1], [HALF, KEYS - 1]).hist;
  }

  private read(grid: Uint32Array, neg: [number, number], pos: [number, number]): { hist: [number, number][]; total: number } {
    const hist: [number, number][] = [];
    let total = 0;
    for (let idx = Math.min(neg[1], HALF - 1); idx >= neg[0]; idx--) {
      const c = grid[idx]!;
      if (c) hist.push([-idx - 1, c]);
      total += c;
    }
    for (let idx = Math.max(pos[0], HALF); idx <= pos[1]; idx++) {
      const c = grid[idx]!;
      if (c) hist.push([idx - HALF, c]);
      total += c;
    }
    return { hist, total };
  }
}

/**
 * Profiles one chunk while it is scored: every feature value of every scored row, and every
 * stored output, in the same pass (no second read of the source).
 */
export class ChunkProfiler {
  private readonly features: Moments[];
  /** float32 features (the common case) go here instead: one pass over the batch, in memory order. */
  private dense: DenseFeatures | null = null;
  private readonly score = new Moments();
  private outputs: Moments[] = [];
  private readonly classes = new Map<string, number>();
  private labels = 0;

  constructor(
    private readonly featureNames: string[],
    private readonly mapping: OutputMapping,
  ) {
    this.features = featureNames.map(() => new Moments());
  }

  /** A batch's feature values, row-major, `width` per row. */
  addFeatures(values: Float32Array | Float64Array | BigInt64Array, rows: number): void {
    const width = this.featureNames.length;
    if (values instanceof Float32Array) {
      this.dense ??= new DenseFeatures(width);
      this.dense.add(values, rows);
      return;
    }
    for (let r = 0, i = 0; r < rows; r++) {
      for (let f = 0; f < width; f++, i++) this.features[f]!.add(Number(values[i]!));
    }
  }

  /** The model's results for a batch of `rows`, as they are stored (the job's output mapping). */
  addOutputs(result: InferResult, rows: number): void {
    if (rows === 0) return;
    const { score, outputs, label } = this.mapping;
    if (score) {
      const t = result[score.output]!;
      const width = Math.max(1, t.data.length / rows);
      const at = score.index ?? 0;
      for (let r = 0; r < rows; r++) this.score.add(Number(t.data[r * width + at]));
    }
    if (outputs) {
      const t = result[outputs.output]!;
      const width = Math.max(1, t.data.length / rows);
      const n = Math.min(width, MAX_OUTPUTS);
      while (this.outputs.length < n) this.outputs.push(new Moments());
      for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) this.outputs[j]!.add(Number(t.data[r * width + j]));
    }
    if (label) {
      const t = result[label.output]!;
      const width = Math.max(1, t.data.length / rows);
      const at = label.index ?? 0;
      for (let r = 0; r < rows; r++) {
        const v = String(t.data[r * width + at]);
        const key = this.classes.has(v) || this.classes.size < MAX_CLASSES ? v : OTHER;
        this.classes.set(key, (this.classes.get(key) ?? 0) + 1);
      }
      this.labels += rows;
    }
  }

  /** The chunk's profiles; `decoded` adds each feature's NULL/NaN/infinite count from the reader. */
  finish(decoded: readonly ReaderStats[] | null): ColumnProfile[] {
    const out = this.features.map((m, f) => {
      const p = m.profile(this.featureNames[f]!, 'feature');
      const d = decoded?.[f];
      if (this.dense && d) {
        // float32 features: the histogram from the batches, the moments from the reader.
        Object.assign(p, {
          count: d.count,
          sum: d.sum,
          sumSq: d.sumSq,
          min: d.count ? d.min : null,
          max: d.count ? d.max : null,
          hist: this.dense.hist(f, d.count ? d : null),
        });
      }
      p.nulls = d?.nulls ?? 0;
      return p;
    });
    this.dense?.release();
    this.dense = null;
    if (this.mapping.score) out.push(this.score.profile('score', 'output'));
    this.outputs.forEach((m, j) => out.push(m.profile(`outputs[${j}]`, 'output')));
    if (this.mapping.label) {
      out.push({
        column: 'label',
        kind: 'label',
        count: this.labels,
        nulls: 0,
        sum: 0,
        sumSq: 0,
        min: null,
        max: null,
        hist: [],
        classes: [...this.classes].sort((a, b) => (a[0] < b[0] ? -1 : 1)),
      });
    }
    return out;
  }
}

export function mean(p: ColumnProfile): number | null {
  return p.count ? p.sum / p.count : null;
}

export function stddev(p: ColumnProfile): number | null {
  if (p.count < 2) return null;
  const m = p.sum / p.count;
  return Math.sqrt(Math.max(0, (p.sumSq - p.count * m * m) / (p.count - 1)));
}

/** Share of the column's rows that were NULL, NaN or infinite. */
export function nullRate(p: ColumnProfile): number {
  const all = p.count + p.nulls;
  return all ? p.nulls / all : 0;
}
