import { GridSum } from './grid.js';
import type { ColumnProfile } from './profile.js';

/**
 * A chunk's profiles as stored with its done-marker: the small per-column fields as JSON, the
 * histograms as varints: each non-empty bucket's step from the one before (1 for neighbours)
 * and its count, about two bytes a bucket, where JSON takes twenty. Layout: magic 0xffffffff,
 * version byte, uint32 JSON length, JSON, then per column the bucket count and the pairs.
 * Profiles stored by the first format (uint32 JSON length first, then (int16 key, uint32
 * count) pairs) are still read.
 */
const MAGIC = 0xffffffff;
const VERSION = 2;
/** Keys run from -16384 (grid.ts): the first key of a column is stored as its step from there. */
const FIRST_KEY = -16384;

export function encodeProfiles(profiles: ColumnProfile[]): Buffer {
  const head = Buffer.from(JSON.stringify(profiles.map(({ hist: _hist, ...rest }) => rest)));
  // At most 3 bytes a step (below 2^15) and 5 a count.
  const worst = 9 + head.length + profiles.reduce((a, p) => a + 5 + p.hist.length * 8, 0);
  const buf = Buffer.allocUnsafe(worst);
  buf.writeUInt32LE(MAGIC, 0);
  buf[4] = VERSION;
  buf.writeUInt32LE(head.length, 5);
  let o = 9 + head.copy(buf, 9);
  for (const p of profiles) {
    o = putVarint(buf, o, p.hist.length);
    let prev = FIRST_KEY;
    for (const [k, c] of p.hist) {
      o = putVarint(buf, o, k - prev);
      o = putVarint(buf, o, c);
      prev = k;
    }
  }
  return buf.subarray(0, o);
}

function putVarint(buf: Buffer, at: number, value: number): number {
  let o = at;
  let v = value;
  while (v >= 0x80) {
    buf[o++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[o++] = v;
  return o;
}

type Head = Omit<ColumnProfile, 'hist'>;
type Visit = (key: number, count: number) => void;

const cutShort = () => new Error('chunk profile is cut short');

/** Reads an encoded chunk profile: the JSON head, and each column's buckets handed to its visitor. */
function readProfiles(buf: Buffer, column: (head: Head) => Visit): Head[] {
  if (buf.length >= 9 && buf.readUInt32LE(0) === MAGIC) {
    if (buf[4] !== VERSION) throw new Error(`chunk profile format ${buf[4]} is not one this prescore reads`);
    const headLen = buf.readUInt32LE(5);
    if (9 + headLen > buf.length) throw cutShort();
    const head = JSON.parse(buf.toString('utf8', 9, 9 + headLen)) as Head[];
    let o = 9 + headLen;
    const next = (): number => {
      let v = 0;
      let scale = 1;
      let b: number;
      do {
        if (o >= buf.length) throw cutShort();
        b = buf[o++]!;
        v += (b & 0x7f) * scale;
        scale *= 128;
      } while (b & 0x80);
      return v;
    };
    for (const h of head) {
      const visit = column(h);
      const n = next();
      for (let i = 0, k = FIRST_KEY; i < n; i++) {
        k += next();
        visit(k, next());
      }
    }
    return head;
  }
  // The first format.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headLen = view.getUint32(0, true);
  const head = JSON.parse(buf.toString('utf8', 4, 4 + headLen)) as Head[];
  let o = 4 + headLen;
  for (const h of head) {
    const n = view.getUint32(o, true);
    if (o + 4 + n * 6 > buf.length) throw cutShort();
    const visit = column(h);
    for (let i = 0, at = o + 4; i < n; i++, at += 6) visit(view.getInt16(at, true), view.getUint32(at + 2, true));
    o += 4 + n * 6;
  }
  return head;
}

export function decodeProfiles(buf: Buffer): ColumnProfile[] {
  const hists = new Map<Head, [number, number][]>();
  const head = readProfiles(buf, (column) => {
    const h: [number, number][] = [];
    hists.set(column, h);
    return (k, c) => h.push([k, c]);
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
    readProfiles(buf, (column) => {
      const grid = this.sum(column).grid;
      return (k, c) => grid.addOne(k, c);
    });
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
