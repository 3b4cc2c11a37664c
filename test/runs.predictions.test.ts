import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { binaryModel, int64Model, linearModel, mlpModel, multiclassModel, treeModel, type TestModel } from './fixtures/models.js';
import {
  MODELS_DIR,
  assertClose,
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  sourceRows,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-20';
const TOLERANCE = 1e-5;

/**
 * Every test model, end to end through `prescore run`: every source row's stored prediction
 * equals the output computed independently in TypeScript, within 1e-5.
 */
describe('prescore run stores the right prediction for every row', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('predictions');
  });
  after(async () => db.drop());

  const cases: { model: TestModel; file: string; rows: number; type?: string; fixedBatch?: boolean }[] = [
    { model: linearModel(), file: 'linear-float32', rows: 2500 },
    { model: linearModel(4, 1, { type: 'float64' }), file: 'linear-float64', rows: 1200, type: 'double precision' },
    { model: linearModel(4, 1, { batch: 1 }), file: 'linear-b1', rows: 1100, fixedBatch: true },
    { model: int64Model(), file: 'int64-linear', rows: 1500, type: 'bigint' },
    { model: mlpModel(), file: 'mlp', rows: 3000 },
    { model: treeModel(), file: 'trees', rows: 3000 },
    { model: binaryModel(), file: 'binary', rows: 2000, type: 'numeric' },
    { model: multiclassModel(), file: 'multiclass', rows: 2000, type: 'smallint' },
  ];

  for (const c of cases) {
    test(`${c.file}: ${c.rows} rows`, async () => {
      const name = c.file.replace(/[^a-z0-9]/g, '');
      const table = `feat_${name}`;
      await seedFeatures(db.pool, table, { rows: c.rows, features: c.model.features, date: DATE, type: c.type ?? 'real' });
      const reg = await cli(db, ['models', 'register', name, path.join(MODELS_DIR, `${c.file}.onnx`), '--alias', 'champion']);
      assert.equal(reg.code, 0, reg.stderr);
      writeJob(
        db,
        jobSpec(
          `job-${name}`,
          `${name}@champion`,
          table,
          featureNames(c.model.features),
          c.model.output ? { output: c.model.output } : {},
        ),
      );
      const run = await cli(db, ['run', `job-${name}`, '--date', DATE, '--json']);
      assert.equal(run.code, 0, run.stderr);
      const info = JSON.parse(run.stdout) as {
        status: string;
        rowsRead: number;
        rowsWritten: number;
        rowsRejected: number;
        chunks: number;
      };
      assert.equal(info.status, 'published');
      assert.equal(info.rowsRead, c.rows);
      assert.equal(info.rowsWritten, c.rows);
      assert.equal(info.rowsRejected, 0);
      assert.ok(info.chunks >= 2, `expected several chunks, got ${info.chunks}`);

      const source = await sourceRows(db.pool, table, c.model.features, DATE);
      const served = await servedPredictions(db.pool, `job-${name}`, DATE);
      assert.equal(served.rows.size, source.size);
      for (const [key, x] of source) {
        const got = served.rows.get(key);
        assert.ok(got, `no prediction for key ${key}`);
        const want = c.model.expect(x);
        if (want.score !== undefined) assertClose(got.score!, want.score, TOLERANCE, `${c.file} key ${key} score`);
        if (want.label !== undefined) assert.equal(got.label, want.label, `${c.file} key ${key} label`);
        else assert.equal(got.label, null);
        if (want.outputs !== undefined) {
          assert.equal(got.outputs?.length, want.outputs.length);
          want.outputs.forEach((v, i) => assertClose(got.outputs![i]!, v, TOLERANCE, `${c.file} key ${key} outputs[${i}]`));
        } else assert.equal(got.outputs, null);
      }
    });
  }

  test('keys round-trip exactly whatever their type: bigint beyond 2^53, text, uuid', async () => {
    const model = linearModel();
    await cli(db, ['models', 'register', 'keys', path.join(MODELS_DIR, 'linear-float32.onnx'), '--alias', 'champion']);
    const kinds = [
      { t: 'keys_big', keyType: 'bigint', keyExpr: '9223372036854775807 - g + 1' },
      { t: 'keys_text', keyType: 'text', keyExpr: `'kunde-' || g || '-ü€'` },
      { t: 'keys_uuid', keyType: 'uuid', keyExpr: `md5(g::text)::uuid` },
    ];
    for (const k of kinds) {
      await seedFeatures(db.pool, k.t, { rows: 2100, features: 4, date: DATE, keyType: k.keyType, keyExpr: k.keyExpr });
      writeJob(db, jobSpec(`job-${k.t.replace('_', '-')}`, 'keys@champion', k.t, featureNames(4)));
      const run = await cli(db, ['run', `job-${k.t.replace('_', '-')}`, '--date', DATE]);
      assert.equal(run.code, 0, run.stderr);
      const source = await sourceRows(db.pool, k.t, 4, DATE);
      const served = await servedPredictions(db.pool, `job-${k.t.replace('_', '-')}`, DATE);
      assert.deepEqual([...served.rows.keys()].sort(), [...source.keys()].sort());
      for (const [key, x] of source) assertClose(served.rows.get(key)!.score!, model.expect(x).score!, TOLERANCE, key);
    }
    const big = await servedPredictions(db.pool, 'job-keys-big', DATE);
    assert.ok(big.rows.has('9223372036854775807'));
  });
});
