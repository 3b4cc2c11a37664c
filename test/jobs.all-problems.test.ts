import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cli, createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

/** A job file with several problems reports every one of them in a single call. */
describe('all problems at once', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('all_problems');
    await seedFeatures(db.pool, 'feats', { rows: 10, features: 4, date: '2026-11-11' });
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => db?.drop());

  test('three problems in the file itself (the schema stage)', async () => {
    writeJob(db, { ...jobSpec('schema3', 'lin@champion', 'feats', featureNames(4)), chunkRows: 5, onBadRow: 'ignore', extra: 1 });
    const r = await cli(db, ['jobs', 'validate', 'schema3']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /chunkRows: must be at least 1000/);
    assert.match(r.stderr, /onBadRow: /);
    assert.match(r.stderr, /unknown field\(s\) extra/);
    assert.match(r.lastError, /3 problems \(listed above\)$/);
  });

  test('three problems against the catalog and the model (the catalog stage)', async () => {
    writeJob(db, {
      ...jobSpec('catalog3', 'lin@nosuch', 'feats', ['f0', 'f1', 'f2', 'nope']),
      source: { table: 'feats', key: 'idx', partition: 'as_of', features: ['f0', 'f1', 'f2', 'nope'] },
    });
    const r = await cli(db, ['jobs', 'validate', 'catalog3']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /model: /);
    assert.match(r.stderr, /source\.key: column "idx" does not exist/);
    assert.match(r.stderr, /source\.features\[3\]: column "nope" does not exist/);
    assert.match(r.lastError, /3 problems \(listed above\)$/);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('  - ')).length, 3);
  });
});
