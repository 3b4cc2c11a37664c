import { keyFloor } from './grid.js';
import { mean, nullRate, stddev, type ColumnProfile } from './profile.js';

/** Quantile bins from the baseline: its 20-quantiles, plus an underflow and an overflow bin. */
const QUANTILES = 20;
/** Counts added to every bin before PSI and JS, so an empty bin is not log(0). */
const SMOOTHING = 0.5;

/**
 * Bin edges on the grid: the keys where the baseline's 5%, 10%, ... 95% quantiles fall,
 * between its min (below: underflow) and max (above: overflow). Repeated values (an integer
 * feature) collapse edges, so such a column gets fewer bins.
 */
export function quantileEdges(hist: [number, number][]): number[] {
  if (hist.length === 0) return [];
  const total = hist.reduce((a, [, c]) => a + c, 0);
  const edges = [hist[0]![0]];
  let cum = 0;
  let q = 1;
  for (const [key, count] of hist) {
    // An edge at a key puts that key's bucket on the right of the edge.
    while (q < QUANTILES && cum >= (q * total) / QUANTILES) {
      if (key > edges[edges.length - 1]!) edges.push(key);
      q++;
    }
    cum += count;
  }
  edges.push(hist[hist.length - 1]![0] + 1);
  return edges;
}

/** Counts of a histogram in the bins of `edges`: [underflow, bin 1, ..., overflow]. */
export function binCounts(hist: [number, number][], edges: number[]): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  let b = 0;
  for (const [key, count] of hist) {
    while (b < edges.length && key >= edges[b]!) b++;
    counts[b]! += count;
  }
  return counts;
}

function shares(counts: number[]): number[] {
  const total = counts.reduce((a, c) => a + c, 0) + SMOOTHING * counts.length;
  return counts.map((c) => (c + SMOOTHING) / total);
}

/** Population stability index of `actual` against `expected` (same bins). */
export function psi(expected: number[], actual: number[]): number {
  const e = shares(expected);
  const a = shares(actual);
  return a.reduce((s, ai, i) => s + (ai - e[i]!) * Math.log(ai / e[i]!), 0);
}

/** Jensen–Shannon distance (base 2: 0 same, 1 disjoint). */
export function jsDistance(expected: number[], actual: number[]): number {
  const e = shares(expected);
  const a = shares(actual);
  let d = 0;
  for (let i = 0; i < e.length; i++) {
    const m = (e[i]! + a[i]!) / 2;
    d += 0.5 * e[i]! * Math.log2(e[i]! / m) + 0.5 * a[i]! * Math.log2(a[i]! / m);
  }
  return Math.sqrt(Math.max(0, d));
}

export interface ColumnDrift {
  column: string;
  kind: ColumnProfile['kind'];
  baseline: { mean: number | null; stddev: number | null; nullRate: number; rows: number };
  run: { mean: number | null; stddev: number | null; nullRate: number; rows: number };
  /** PSI and JS over the baseline's quantile bins (numeric columns). */
  psi: number | null;
  js: number | null;
  /** (run mean - baseline mean) / baseline stddev. */
  meanShift: number | null;
  /** run null rate - baseline null rate. */
  nullRateChange: number;
  /** For the label: the largest change of any class's share (L-infinity). */
  classShift: number | null;
  /** The bins, for reports and charts: lower edges (values) and each side's counts. */
  bins: { edges: number[]; baseline: number[]; run: number[] } | null;
}

/** Drift of one column against its baseline's profile of the same column. */
export function columnDrift(base: ColumnProfile, run: ColumnProfile): ColumnDrift {
  const baseSd = stddev(base);
  const baseMean = mean(base);
  const runMean = mean(run);
  const drift: ColumnDrift = {
    column: run.column,
    kind: run.kind,
    baseline: { mean: baseMean, stddev: baseSd, nullRate: nullRate(base), rows: base.count + base.nulls },
    run: { mean: runMean, stddev: stddev(run), nullRate: nullRate(run), rows: run.count + run.nulls },
    psi: null,
    js: null,
    meanShift: baseMean !== null && runMean !== null && baseSd ? (runMean - baseMean) / baseSd : null,
    nullRateChange: nullRate(run) - nullRate(base),
    classShift: null,
    bins: null,
  };
  if (run.kind === 'label') {
    const b = new Map(base.classes ?? []);
    const r = new Map(run.classes ?? []);
    const bt = base.count || 1;
    const rt = run.count || 1;
    let shift = 0;
    for (const k of new Set([...b.keys(), ...r.keys()]))
      shift = Math.max(shift, Math.abs((r.get(k) ?? 0) / rt - (b.get(k) ?? 0) / bt));
    drift.classShift = shift;
    return drift;
  }
  const edges = quantileEdges(base.hist);
  if (edges.length === 0 || run.hist.length === 0) return drift;
  const expected = binCounts(base.hist, edges);
  const actual = binCounts(run.hist, edges);
  drift.psi = psi(expected, actual);
  drift.js = jsDistance(expected, actual);
  drift.bins = { edges: edges.map(keyFloor), baseline: expected, run: actual };
  return drift;
}

export interface DriftReport {
  rows: { baseline: number; run: number; change: number | null };
  columns: ColumnDrift[];
  /** Columns of the run its baseline does not have (or the reverse), by name. */
  unmatched: string[];
}

/**
 * Every column of the run against the same column of the baseline. `rows`: the run's rows
 * read, and those of the job's previous published run (the row-count gate compares them).
 */
export function driftReport(
  baseline: ColumnProfile[],
  run: ColumnProfile[],
  rows: { run: number; previous: number | null },
): DriftReport {
  const base = new Map(baseline.map((p) => [p.column, p]));
  const runRows = rows.run;
  const previousRows = rows.previous;
  const columns: ColumnDrift[] = [];
  const unmatched: string[] = [];
  for (const p of run) {
    const b = base.get(p.column);
    if (b && b.kind === p.kind) columns.push(columnDrift(b, p));
    else unmatched.push(p.column);
  }
  for (const b of baseline) if (!run.some((p) => p.column === b.column)) unmatched.push(b.column);
  return {
    rows: {
      baseline: previousRows ?? 0,
      run: runRows,
      change: previousRows ? (runRows - previousRows) / previousRows : null,
    },
    columns,
    unmatched,
  };
}
