import assert from 'node:assert/strict';
import { finished } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { from as copyFrom } from 'pg-copy-streams';
import type { InferResult } from '../src/inference/protocol.js';
import type { OutputMapping } from '../src/models/output.js';
import { COPY_HEADER, COPY_TRAILER, PREDICTION_COLUMNS, encodePredictions } from '../src/sink/encode.js';
import { createTestDb, type TestDb } from './helpers.js';

/** Keys as the record batch holds them: UTF-8 bytes and offsets. */
function keyColumn(keys: string[]): { offsets: Int32Array; data: Uint8Array } {
  const bytes = keys.map((k) => Buffer.from(k, 'utf8'));
  const offsets = new Int32Array(keys.length + 1);
  bytes.forEach((b, i) => (offsets[i + 1] = offsets[i]! + b.length));
  return { offsets, data: new Uint8Array(Buffer.concat(bytes)) };
}

interface Row {
  key: string;
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/** Every output shape the job file allows: encoded in binary COPY, read back by SQL, equal. */
describe('binary COPY encoder round-trip', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('roundtrip');
    await db.pool.query(`CREATE TABLE preds (run_id bigint, key text COLLATE "C", score float8, label text, outputs float8[])`);
  });
  after(async () => db?.drop());

  async function roundTrip(keys: string[], mapping: OutputMapping, result: InferResult): Promise<Row[]> {
    await db.pool.query('TRUNCATE preds');
    const client = await db.pool.connect();
    try {
      const sink = client.query(copyFrom(`COPY preds ${PREDICTION_COLUMNS} FROM STDIN (FORMAT binary)`));
      sink.write(COPY_HEADER);
      sink.write(encodePredictions(42n, keyColumn(keys), keys.length, mapping, result));
      sink.end(COPY_TRAILER);
      await finished(sink);
    } finally {
      client.release();
    }
    const { rows } = await db.pool.query<Row & { run_id: string }>(
      'SELECT run_id::text, key, score, label, outputs FROM preds ORDER BY key',
    );
    for (const r of rows) assert.equal(r.run_id, '42');
    return rows.map(({ key, score, label, outputs }) => ({ key, score, label, outputs }));
  }

  const f32 = (v: number[]) => ({ type: 'float32', dims: [v.length, 1], data: Float32Array.from(v) });
  const sortByKey = (rows: Row[]) => [...rows].sort((a, b) => (Buffer.from(a.key) < Buffer.from(b.key) ? -1 : 1));

  test('score only, from a [N,1] float32 output; float64 scores keep every bit', async () => {
    const keys = ['a', 'b', 'c'];
    assert.deepEqual(await roundTrip(keys, { score: { output: 'y', index: null } }, { y: f32([0.5, -1.25, 3e10]) }), [
      { key: 'a', score: 0.5, label: null, outputs: null },
      { key: 'b', score: -1.25, label: null, outputs: null },
      { key: 'c', score: Math.fround(3e10), label: null, outputs: null },
    ]);
    const exact = [0.1, 1 / 3, Number.MIN_VALUE, -Number.MAX_VALUE];
    const got = await roundTrip(
      ['1', '2', '3', '4'],
      { score: { output: 'y', index: null } },
      { y: { type: 'float64', dims: [4], data: Float64Array.from(exact) } },
    );
    assert.deepEqual(
      got.map((r) => r.score),
      exact,
    );
  });

  test('NaN and ±Infinity scores are stored as such', async () => {
    const got = await roundTrip(['n', 'p', 'q'], { score: { output: 'y', index: null } }, { y: f32([NaN, Infinity, -Infinity]) });
    assert.ok(Number.isNaN(got[0]!.score));
    assert.equal(got[1]!.score, Infinity);
    assert.equal(got[2]!.score, -Infinity);
  });

  test('labels: int64 and string, one picked from a vector; unicode', async () => {
    const ints = await roundTrip(
      ['a', 'b'],
      { label: { output: 'l', index: null } },
      { l: { type: 'int64', dims: [2], data: BigInt64Array.from([7n, -9223372036854775808n]) } },
    );
    assert.deepEqual(
      ints.map((r) => r.label),
      ['7', '-9223372036854775808'],
    );
    const strings = await roundTrip(
      ['a', 'b'],
      { label: { output: 'l', index: 1 } },
      { l: { type: 'string', dims: [2, 2], data: ['x', 'ünïcødé ✓', 'y', ''] } },
    );
    assert.deepEqual(
      strings.map((r) => r.label),
      ['ünïcødé ✓', ''],
    );
  });

  test('outputs arrays of 1 and of 32 values, with score and label from the same vector', async () => {
    const one = await roundTrip(['k'], { outputs: { output: 'p', index: null } }, { p: f32([0.25]) });
    assert.deepEqual(one[0]!.outputs, [0.25]);
    const width = 32;
    const data = Float32Array.from({ length: 2 * width }, (_, i) => (i % width) / 8 - 2);
    const mapping: OutputMapping = {
      score: { output: 'p', index: 31 },
      label: { output: 'c', index: null },
      outputs: { output: 'p', index: null },
    };
    const got = await roundTrip(['a', 'b'], mapping, {
      p: { type: 'float32', dims: [2, width], data },
      c: { type: 'string', dims: [2], data: ['yes', 'no'] },
    });
    const row0 = Array.from(data.subarray(0, width));
    assert.deepEqual(got[0], { key: 'a', score: row0[31], label: 'yes', outputs: row0 });
    assert.deepEqual(got[1]!.outputs, Array.from(data.subarray(width)));
  });

  test('keys: empty, unicode, 512 bytes, and a bigint beyond 2^53 as text', async () => {
    const keys = ['', 'ключ/？ x', 'k'.repeat(512), '9223372036854775807'];
    const got = await roundTrip(keys, { score: { output: 'y', index: null } }, { y: f32([1, 2, 3, 4]) });
    assert.deepEqual(
      got.map((r) => r.key),
      sortByKey(keys.map((key) => ({ key, score: 0, label: null, outputs: null }))).map((r) => r.key),
    );
    assert.deepEqual(new Map(got.map((r) => [r.key, r.score])), new Map(keys.map((k, i) => [k, i + 1])));
  });

  test('rows marked to skip are left out, the others intact', async () => {
    const keys = ['a', 'b', 'c'];
    const buf = encodePredictions(
      42n,
      keyColumn(keys),
      3,
      { score: { output: 'y', index: null } },
      { y: f32([1, 2, 3]) },
      Uint8Array.from([0, 1, 0]),
    );
    await db.pool.query('TRUNCATE preds');
    const client = await db.pool.connect();
    try {
      const sink = client.query(copyFrom(`COPY preds ${PREDICTION_COLUMNS} FROM STDIN (FORMAT binary)`));
      sink.end(Buffer.concat([COPY_HEADER, buf, COPY_TRAILER]));
      await finished(sink);
    } finally {
      client.release();
    }
    const { rows } = await db.pool.query<{ key: string; score: number }>('SELECT key, score FROM preds ORDER BY key');
    assert.deepEqual(
      rows.map((r) => [r.key, r.score]),
      [
        ['a', 1],
        ['c', 3],
      ],
    );
  });
});
