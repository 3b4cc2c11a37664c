import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProfileMerger, decodeProfiles, encodeProfiles, mergeProfiles } from '../src/profile/codec.js';
import { GridCounts } from '../src/profile/grid.js';
import { ChunkProfiler, gridReads, type ReaderStats } from '../src/profile/profile.js';

/** What the reader would count of column f over `rows` rows of a row-major batch. */
function readerStats(values: Float32Array, width: number, rows: number): ReaderStats[] {
  return Array.from({ length: width }, (_, f) => {
    const s = { count: 0, nulls: 0, sum: 0, sumSq: 0, min: Infinity, max: -Infinity };
    for (let r = 0; r < rows; r++) {
      const v = values[r * width + f]!;
      s.count++;
      s.sum += v;
      s.sumSq += v * v;
      if (v < s.min) s.min = v;
      if (v > s.max) s.max = v;
    }
    return s;
  });
}

/** The histogram one value at a time through the generic grid: the reference. */
function reference(values: Float32Array, width: number, rows: number, f: number): [number, number][] {
  const g = new GridCounts();
  for (let r = 0; r < rows; r++) g.add(values[r * width + f]!);
  return g.sparse();
}

// Columns that stress the bounded grid read: signs, zeros of both signs, tiny and huge magnitudes.
const COLUMNS: Record<string, (r: number) => number> = {
  mixed: (r) => Math.sin(r * 0.37) * 3,
  negativeOnly: (r) => -1 - (r % 97) * 0.5,
  positiveOnly: (r) => 1e-3 + (r % 89),
  minusZeroAndZero: (r) => (r % 3 === 0 ? -0 : r % 3 === 1 ? 0 : 0.5),
  onlyMinusZero: () => -0,
  tinyNegatives: (r) => -1e-38 * (1 + (r % 5)),
  huge: (r) => (r % 2 ? 3e38 : -3e38),
  constant: () => 42,
};

describe('drift profiles: bounded grid reads and the stored form', () => {
  const names = Object.keys(COLUMNS);
  const width = names.length;
  const rows = 3001;
  const values = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) names.forEach((n, f) => (values[r * width + f] = COLUMNS[n]!(r)));

  test("a feature's histogram read between the reader's min and max equals the whole grid's", () => {
    const p = new ChunkProfiler(names, {});
    p.addFeatures(values, rows);
    const before = { ...gridReads };
    const out = p.finish(readerStats(values, width, rows));
    names.forEach((n, f) => assert.deepEqual(out[f]!.hist, reference(values, width, rows, f), n));
    assert.deepEqual(gridReads, { bounded: before.bounded + width, whole: before.whole }, 'every column read between its bounds');
  });

  test('a min/max that does not cover the values (a wrong reader count) falls back to the whole grid', () => {
    const p = new ChunkProfiler(names, {});
    p.addFeatures(values, rows);
    const wrong = readerStats(values, width, rows).map((s) => ({ ...s, min: 7, max: 8 }));
    const before = { ...gridReads };
    const out = p.finish(wrong);
    names.forEach((n, f) => assert.deepEqual(out[f]!.hist, reference(values, width, rows, f), n));
    // Every column but onlyMinusZero falls back: its -0s sit in the one negative slot read anyway.
    assert.equal(gridReads.whole - before.whole, width - 1);
  });

  test('encoded and decoded, or merged straight from the bytes, profiles are unchanged', () => {
    const parts = [0, 1000, 1001, 3001];
    const chunks = [];
    for (let i = 0; i + 1 < parts.length; i++) {
      const n = parts[i + 1]! - parts[i]!;
      const slice = values.slice(parts[i]! * width, parts[i + 1]! * width);
      const p = new ChunkProfiler(names, { score: { output: 'y', index: 0 } });
      p.addFeatures(slice, n);
      p.addOutputs({ y: { data: slice.filter((_, j) => j % width === 0), dims: [n, 1], type: 'float32' } }, n);
      chunks.push(p.finish(readerStats(slice, width, n)));
    }
    // The small fields travel as JSON (where -0 is 0); the histograms bit for bit.
    for (const c of chunks) assert.deepEqual(decodeProfiles(encodeProfiles(c)), JSON.parse(JSON.stringify(c)));
    const merger = new ProfileMerger();
    for (const c of chunks) merger.addEncoded(encodeProfiles(c));
    const fromBytes = merger.result();
    assert.deepEqual(fromBytes, mergeProfiles(chunks.map((c) => JSON.parse(JSON.stringify(c)) as typeof c)));
    names.forEach((n, f) => assert.deepEqual(fromBytes[f]!.hist, reference(values, width, rows, f), n));
  });

  test('profiles stored in the first format (int16 key, uint32 count pairs) are still read', () => {
    const p = new ChunkProfiler(names, {});
    p.addFeatures(values, rows);
    const profiles = JSON.parse(JSON.stringify(p.finish(readerStats(values, width, rows)))) as ReturnType<typeof p.finish>;
    const head = Buffer.from(JSON.stringify(profiles.map(({ hist: _hist, ...rest }) => rest)));
    const parts = [Buffer.alloc(4), head];
    parts[0]!.writeUInt32LE(head.length);
    for (const c of profiles) {
      const b = Buffer.alloc(4 + c.hist.length * 6);
      b.writeUInt32LE(c.hist.length, 0);
      c.hist.forEach(([k, n], i) => (b.writeInt16LE(k, 4 + i * 6), b.writeUInt32LE(n, 6 + i * 6)));
      parts.push(b);
    }
    const old = Buffer.concat(parts);
    assert.deepEqual(decodeProfiles(old), profiles);
    const merger = new ProfileMerger();
    merger.addEncoded(old);
    assert.deepEqual(merger.result(), mergeProfiles([profiles]));
    // And the current form is much smaller: about two bytes a bucket.
    assert.ok(encodeProfiles(profiles).length < old.length / 2, `${encodeProfiles(profiles).length} vs ${old.length} bytes`);
  });

  test('a stored profile cut short is an error, not a smaller histogram', () => {
    const p = new ChunkProfiler(names, {});
    p.addFeatures(values, rows);
    const buf = encodeProfiles(p.finish(readerStats(values, width, rows)));
    assert.throws(() => new ProfileMerger().addEncoded(buf.subarray(0, buf.length - 3)), /cut short/);
  });
});
