import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { ROW_GROUP_ROWS } from '../src/export/parquet.js';
import { multiclassModel } from './fixtures/models.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  servedPredictions,
  writeJob,
  type StoredPrediction,
  type TestDb,
} from './helpers.js';

const DATE = '2026-08-01';
// More than one row group, and keys that CSV must quote (comma, quote, line break, spaces).
const ROWS = ROW_GROUP_ROWS + 1234;
const AWKWARD = ['a,b', 'say "hi"', 'two\nlines', ' padded ', 'crlf\r\nkey', '"'];
const KEY_EXPR = `CASE g ${AWKWARD.map((k, i) => `WHEN ${i + 1} THEN ${pgLiteral(k)}`).join(' ')} ELSE 'k' || g END`;

function pgLiteral(s: string): string {
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;
}

/** RFC 4180: fields separated by commas, quoted when needed, quotes doubled inside quotes. */
function parseCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let i = 0;
  while (i < text.length) {
    let field: string | null;
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        assert.ok(q >= 0, 'unterminated quoted field');
        value += text.slice(i, q);
        i = q + 1;
        if (text[i] === '"') {
          value += '"';
          i++;
        } else break;
      }
      field = value;
    } else {
      let end = i;
      while (end < text.length && text[end] !== ',' && text[end] !== '\n') end++;
      const raw = text.slice(i, end);
      field = raw === '' ? null : raw; // PostgreSQL writes NULL as an unquoted empty field
      i = end;
    }
    row.push(field);
    if (text[i] === ',') i++;
    else {
      rows.push(row);
      row = [];
      if (text[i] === '\n') i++;
    }
  }
  return rows;
}

describe('prescore export', () => {
  let db: TestDb;
  let dir: string;
  let served: Map<string, StoredPrediction>;
  before(async () => {
    db = await createTestDb('export');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-export-'));
    await registerModel(db, 'multi', 'multiclass');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE, keyType: 'text', keyExpr: KEY_EXPR });
    writeJob(
      db,
      jobSpec('exp', 'multi@champion', 'feats', featureNames(4), { output: multiclassModel().output, chunkRows: 20000 }),
    );
    const r = await cli(db, ['run', 'exp', '--date', DATE]);
    assert.equal(r.code, 0, r.stderr);
    served = (await servedPredictions(db.pool, 'exp', DATE)).rows;
    assert.equal(served.size, ROWS);
    for (const k of AWKWARD) assert.ok(served.has(k), `key ${JSON.stringify(k)} stored`);
    assert.ok([...served.values()].every((p) => p.score !== null && p.label !== null && p.outputs?.length === 3));
  });
  after(async () => {
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('csv: every key, quoted where needed, with the exact stored score, label and outputs', async () => {
    const out = path.join(dir, 'exp.csv');
    const r = await cli(db, ['export', 'exp', '--date', DATE, '--format', 'csv', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`exported ${ROWS.toLocaleString('en-US')} predictions of exp ${DATE} \\(run \\d+\\)`));
    const text = fs.readFileSync(out, 'utf8');
    assert.ok(text.includes('"a,b"') && text.includes('"say ""hi"""') && text.includes('"two\nlines"'));
    const [header, ...rows] = parseCsv(text);
    assert.deepEqual(header, ['key', 'score', 'label', 'outputs']);
    assert.equal(rows.length, ROWS);
    const seen = new Set<string>();
    for (const [key, score, label, outputs] of rows) {
      const want = served.get(key!);
      assert.ok(want, `exported key ${JSON.stringify(key)} is stored`);
      seen.add(key!);
      assert.deepEqual(
        { score: Number(score), label, outputs: JSON.parse(outputs!) as number[] },
        { score: want.score, label: want.label, outputs: want.outputs },
        `key ${JSON.stringify(key)}`,
      );
    }
    assert.equal(seen.size, ROWS);
  });

  test('parquet: read back with hyparquet, equal to the stored values; row groups of bounded size', async () => {
    const out = path.join(dir, 'exp.parquet');
    const r = await cli(db, ['export', 'exp', '--date', DATE, '--format', 'parquet', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { rows: number }).rows, ROWS);
    const file = await asyncBufferFromFile(out);
    const meta = await parquetMetadataAsync(file);
    assert.equal(Number(meta.num_rows), ROWS);
    assert.ok(meta.row_groups.length >= 2);
    assert.ok(meta.row_groups.every((g) => Number(g.num_rows) <= ROW_GROUP_ROWS));
    assert.equal(meta.key_value_metadata?.find((kv) => kv.key === 'prescore.job')?.value, 'exp');
    const rows = (await parquetReadObjects({ file })) as { key: string; score: number; label: string; outputs: number[] }[];
    assert.equal(rows.length, ROWS);
    assert.equal(new Set(rows.map((x) => x.key)).size, ROWS);
    for (const row of rows) {
      const want = served.get(row.key);
      assert.ok(want, `exported key ${JSON.stringify(row.key)} is stored`);
      assert.deepEqual(
        { score: row.score, label: row.label, outputs: row.outputs },
        { score: want.score, label: want.label, outputs: want.outputs },
        `key ${JSON.stringify(row.key)}`,
      );
    }
  });

  test('a date with no published run: a clear error naming job and date, exit 2, no file left', async () => {
    const out = path.join(dir, 'none.csv');
    const r = await cli(db, ['export', 'exp', '--date', '2026-08-02', '--out', out]);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /^error: job exp has no published run for 2026-08-02: nothing to export/);
    assert.equal(fs.existsSync(out), false);
    const bad = await cli(db, ['export', 'exp', '--date', DATE, '--format', 'xlsx', '--out', out]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--format.*xlsx/);
  });
});
