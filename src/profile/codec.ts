import { GridSum } from './grid.js';
import type { ColumnProfile } from './profile.js';

/**
 * A chunk's profiles as stored with its done-marker: the small per-column fields as JSON, the
 * histograms as packed (int16 key, uint32 count) pairs. About six bytes a bucket instead of
 * twenty of JSON, and no parse of thousands of arrays per chunk at finalize.
 */
export function encodeProfiles(profiles: ColumnProfile[]): Buffer {
  const head = Buffer.from(JSON.stringify(profiles.map(({ hist: _hist, ...rest }) => rest)));
  const size = 4 + head.length + profiles.reduce((a, p) => a + 4 + p.hist.length * 6, 0);
  const buf = Buffer.allocUnsafe(size);
  // A DataView writes a field in a few instructions; Buffer's write methods check each call.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setUint32(0, head.length, true);
  let o = 4 + head.copy(buf, 4);
  for (const p of profiles) {
    view.setUint32(o, p.hist.length, true);
    o += 4;
    for (const [k, c] of p.hist) {
      view.setInt16(o, k, true);
      view.setUint32(o + 2, c, true);
      o += 6;
    }
  }
  return buf;
}

type Head = Omit<ColumnProfile, 'hist'>;

/** Reads an encoded chunk profile: the JSON head, and each column's histogram handed to `hist`. */
function readProfiles(buf: Buffer, hist: (column: Head, view: DataView, at: number, n: number) => void): Head[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headLen = view.getUint32(0, true);
  const head = JSON.parse(buf.toString('utf8', 4, 4 + headLen)) as Head[];
  let o = 4 + headLen;
  for (let c = 0; c < head.length; c++) {
    const n = view.getUint32(o, true);
    if (o + 4 + n * 6 > buf.length) throw new Error('chunk profile is cut short');
    hist(head[c]!, view, o + 4, n);
    o += 4 + n * 6;
  }
  return head;
}

export function decodeProfiles(buf: Buffer): ColumnProfile[] {
  const hists = new Map<Head, [number, number][]>();
  const head = readProfiles(buf, (column, view, at, n) => {
    const h: [number, number][] = new Array(n);
    for (let i = 0, o = at; i < n; i++, o += 6) h[i] = [view.getInt16(o, true), view.getUint32(o + 2, true)];
    hists.set(column, h);
  });
  return head.map((h) => ({ ...h, hist: hists.get(h)! }));
}

interface Sum {
  first: Omit<ColumnProfile, 'hist'>;
  count: number;
  nulls: number;
  sum: number;
  sumSq: number;
  min: number | null;
  max: number | null;
  grid: GridSum;
  classes: Map<string, number> | null;
}

/**
 * Merges profiles one chunk at a time into dense sums: memory is one grid per column,
 * whatever the number of chunks. The result equals one pass over all the chunks' rows.
 */
export class ProfileMerger {
  private readonly columns = new Map<string, Sum>();

  add(profiles: ColumnProfile[]): void {
    for (const p of profiles) this.sum(p).grid.add(p.hist);
  }

  /** An encoded chunk profile (encodeProfiles), its histograms added straight from the bytes. */
  addEncoded(buf: Buffer): void {
    readProfiles(buf, (column, view, at, n) => this.sum(column).grid.addPacked(view, at, n));
  }

  /** The column's sums with `p`'s counts, moments and classes added (its histogram is the caller's). */
  private sum(p: Omit<ColumnProfile, 'hist'>): Sum {
    let s = this.columns.get(p.column);
    if (!s) {
      s = {
        first: p,
        count: 0,
        nulls: 0,
        sum: 0,
        sumSq: 0,
        min: null,
        max: null,
        grid: new GridSum(),
        classes: p.classes ? new Map() : null,
      };
      this.columns.set(p.column, s);
    }
    s.count += p.count;
    s.nulls += p.nulls;
    s.sum += p.sum;
    s.sumSq += p.sumSq;
    if (p.min !== null && (s.min === null || p.min < s.min)) s.min = p.min;
    if (p.max !== null && (s.max === null || p.max > s.max)) s.max = p.max;
    if (s.classes) for (const [k, c] of p.classes ?? []) s.classes.set(k, (s.classes.get(k) ?? 0) + c);
    return s;
  }

  result(): ColumnProfile[] {
    return [...this.columns.values()].map((s) => {
      const p: ColumnProfile = {
        column: s.first.column,
        kind: s.first.kind,
        count: s.count,
        nulls: s.nulls,
        sum: s.sum,
        sumSq: s.sumSq,
        min: s.min,
        max: s.max,
        hist: s.grid.sparse(),
      };
      if (s.classes) p.classes = [...s.classes].sort((a, b) => (a[0] < b[0] ? -1 : 1));
      return p;
    });
  }
}

/** Merges chunk profiles column by column: counts equal one pass over all the chunks' rows. */
export function mergeProfiles(chunks: ColumnProfile[][]): ColumnProfile[] {
  const merger = new ProfileMerger();
  for (const list of chunks) merger.add(list);
  return merger.result();
}
