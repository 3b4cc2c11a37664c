import type { InferResult } from '../inference/protocol.js';
import type { OutputMapping } from '../models/output.js';
import { GridCounts, mergeSparse } from './grid.js';

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
 * Profiles one chunk while it is scored: every feature value of every scored row, and every
 * stored output, in the same pass (no second read of the source).
 */
export class ChunkProfiler {
  private readonly features: Moments[];
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
      // The hot path: moments from the floats, the histogram from their bits (no per-value store).
      const bits = new Uint32Array(values.buffer, values.byteOffset, rows * width);
      for (let f = 0; f < width; f++) {
        const m = this.features[f]!;
        let sum = 0;
        let sumSq = 0;
        let min = m.min;
        let max = m.max;
        for (let i = f, r = 0; r < rows; r++, i += width) {
          const v = values[i]!;
          sum += v;
          sumSq += v * v;
          if (v < min) min = v;
          if (v > max) max = v;
        }
        m.count += rows;
        m.sum += sum;
        m.sumSq += sumSq;
        m.min = min;
        m.max = max;
        m.grid.addFloat32(bits, f, width, rows);
      }
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
  finish(decoded: readonly { nulls: number }[] | null): ColumnProfile[] {
    const out = this.features.map((m, f) => {
      const p = m.profile(this.featureNames[f]!, 'feature');
      p.nulls = decoded?.[f]?.nulls ?? 0;
      return p;
    });
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

/** Merges chunk profiles column by column: counts equal one pass over all the chunks' rows. */
export function mergeProfiles(chunks: ColumnProfile[][]): ColumnProfile[] {
  const byColumn = new Map<string, ColumnProfile[]>();
  for (const list of chunks) for (const p of list) byColumn.set(p.column, [...(byColumn.get(p.column) ?? []), p]);
  return [...byColumn.values()].map((parts) => {
    const first = parts[0]!;
    const mins = parts.map((p) => p.min).filter((v): v is number => v !== null);
    const maxs = parts.map((p) => p.max).filter((v): v is number => v !== null);
    const merged: ColumnProfile = {
      column: first.column,
      kind: first.kind,
      count: parts.reduce((a, p) => a + p.count, 0),
      nulls: parts.reduce((a, p) => a + p.nulls, 0),
      sum: parts.reduce((a, p) => a + p.sum, 0),
      sumSq: parts.reduce((a, p) => a + p.sumSq, 0),
      min: mins.length ? Math.min(...mins) : null,
      max: maxs.length ? Math.max(...maxs) : null,
      hist: mergeSparse(parts.map((p) => p.hist)),
    };
    if (first.classes) {
      const classes = new Map<string, number>();
      for (const p of parts) for (const [k, c] of p.classes ?? []) classes.set(k, (classes.get(k) ?? 0) + c);
      merged.classes = [...classes].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    }
    return merged;
  });
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
