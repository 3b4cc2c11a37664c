import assert from 'node:assert/strict';
import { request, startApi } from './api-helpers.js';
import { after, before, describe, test } from 'node:test';
import {
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-21';

/** Invariant 4: every source row becomes one prediction or one reject row with a reason. */
describe('rows that cannot be scored', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('rejects');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 3000, features: 4, date: DATE, type: 'double precision' });
    await db.pool.query(`UPDATE feats SET f1 = NULL WHERE id = 10`);
    await db.pool.query(`UPDATE feats SET f2 = 'NaN' WHERE id = 1500`);
    await db.pool.query(`UPDATE feats SET f3 = 'Infinity' WHERE id = 2999`);
    await db.pool.query(`UPDATE feats SET f0 = '-Infinity' WHERE id = 2000`);
  });
  after(async () => db.drop());

  test('are rejected with the key and the reason, and read = written + rejected', async () => {
    writeJob(db, jobSpec('rej', 'lin@champion', 'feats', featureNames(4)));
    const run = await cli(db, ['run', 'rej', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { id: string; rowsRead: number; rowsWritten: number; rowsRejected: number };
    assert.deepEqual([info.rowsRead, info.rowsWritten, info.rowsRejected], [3000, 2996, 4]);
    const { rows } = await db.pool.query<{ key: string; reason: string }>(
      'SELECT key, reason FROM prescore.rejects WHERE run_id = $1 ORDER BY key::int',
      [info.id],
    );
    assert.deepEqual(rows, [
      { key: '10', reason: 'NULL in column f1' },
      { key: '1500', reason: 'NaN in column f2' },
      { key: '2000', reason: '-Infinity in column f0' },
      { key: '2999', reason: 'Infinity in column f3' },
    ]);
    const served = await servedPredictions(db.pool, 'rej', DATE);
    assert.equal(served.rows.size, 2996);
    for (const key of ['10', '1500', '2000', '2999']) assert.ok(!served.rows.has(key), `rejected key ${key} must not be served`);
    const stats = await db.pool.query<{ feature: string; nulls: string; count: string }>(
      'SELECT feature, nulls, count FROM prescore.feature_stats WHERE run_id = $1 ORDER BY feature',
      [info.id],
    );
    assert.equal(stats.rows.length, 4);
    assert.equal(stats.rows.find((s) => s.feature === 'f1')!.nulls, '1');
  });

  test('onBadRow "fail" fails the run naming the key and column, and publishes nothing new', async () => {
    writeJob(db, jobSpec('rej-fail', 'lin@champion', 'feats', featureNames(4), { onBadRow: 'fail' }));
    const run = await cli(db, ['run', 'rej-fail', '--date', DATE]);
    assert.notEqual(run.code, 0);
    assert.match(
      run.lastError,
      /^error: job rej-fail 2026-11-21: chunk \d+ \(keys .*\) of run \d+ failed: key \d+: (NULL|NaN|Infinity|-Infinity) in column f\d/,
    );
    const served = await servedPredictions(db.pool, 'rej-fail', DATE);
    assert.equal(served.runId, null);
    const status = await db.pool.query(`SELECT status FROM prescore.runs WHERE job = 'rej-fail'`);
    assert.equal(status.rows[0].status, 'failed');
  });

  test('a reject rate above maxRejectRate fails the run without publishing', async () => {
    writeJob(db, jobSpec('rej-rate', 'lin@champion', 'feats', featureNames(4), { maxRejectRate: 0.001 }));
    const run = await cli(db, ['run', 'rej-rate', '--date', DATE]);
    assert.notEqual(run.code, 0);
    assert.match(run.lastError, /4 of 3000 rows rejected \(0\.13%\), above maxRejectRate 0\.001; e\.g\. \d+: /);
    assert.equal((await servedPredictions(db.pool, 'rej-rate', DATE)).runId, null);
  });
});

/** Values a float32 model cannot take, and outputs that are not numbers, are rejected with the reason. */
describe('rejects beyond NULL and NaN', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('rejects_more');
    await registerModel(db, 'lin', 'linear-float32');
    await registerModel(db, 'log', 'log');
    await db.pool.query(
      `CREATE TABLE wide (id bigint, as_of date, f0 double precision, f1 real, f2 real, f3 real, PRIMARY KEY (id, as_of))`,
    );
    await db.pool.query(
      `INSERT INTO wide SELECT g, '2026-11-13', CASE g WHEN 3 THEN 1e300 WHEN 4 THEN -1e300 WHEN 5 THEN -2 WHEN 6 THEN 0 ELSE g END, 1, 1, 1
         FROM generate_series(1, 200) g`,
    );
  });
  after(async () => db?.drop());

  test('a double too large for float32 is rejected, not scored as Infinity', async () => {
    writeJob(db, jobSpec('overflow', 'lin@champion', 'wide', featureNames(4)));
    const r = await cli(db, ['run', 'overflow', '--date', '2026-11-13', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { rowsRead: number; rowsWritten: number; rowsRejected: number };
    assert.deepEqual([info.rowsRead, info.rowsWritten, info.rowsRejected], [200, 198, 2]);
    const { rows } = await db.pool.query<{ key: string; reason: string }>(
      'SELECT key, reason FROM prescore.rejects ORDER BY key',
    );
    assert.deepEqual(
      rows.map((x) => [x.key, x.reason]),
      [
        ['3', 'f0 = 1e+300 overflows float32'],
        ['4', 'f0 = -1e+300 overflows float32'],
      ],
    );
  });

  test('a model output of NaN or Infinity is rejected with its reason, not stored', async () => {
    writeJob(db, jobSpec('logs', 'log@champion', 'wide', featureNames(4), { maxRejectRate: 0.5 }));
    const r = await cli(db, ['run', 'logs', '--date', '2026-11-13', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { id: string; rowsRead: number; rowsWritten: number; rowsRejected: number };
    assert.equal(info.rowsRead, 200);
    assert.equal(info.rowsWritten + info.rowsRejected, 200);
    const { rows } = await db.pool.query<{ key: string; reason: string }>(
      'SELECT key, reason FROM prescore.rejects WHERE run_id = $1::bigint ORDER BY key',
      [info.id],
    );
    assert.deepEqual(
      rows.map((x) => [x.key, x.reason]),
      [
        ['3', 'f0 = 1e+300 overflows float32'],
        ['4', 'f0 = -1e+300 overflows float32'],
        ['5', 'model output NaN in score'],
        ['6', 'model output -Infinity in score'],
      ],
    );
    const served = await servedPredictions(db.pool, 'logs', '2026-11-13');
    assert.equal(served.rows.size, 196);
    for (const [, p] of served.rows) assert.ok(Number.isFinite(p.score), 'only finite scores are stored');
  });

  test('rejects are visible outside SQL: prescore rejects, counts per reason in runs show, and the API says why', async () => {
    const id = (
      await db.pool.query<{ id: string }>(`SELECT id::text FROM prescore.runs WHERE job = 'logs' AND status = 'published'`)
    ).rows[0]!.id;
    const list = await cli(db, ['rejects', id, '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { key: string; reason: string }[]).map((r) => r.key),
      ['3', '4', '5', '6'],
    );
    const limited = await cli(db, ['rejects', id, '--limit', '2']);
    assert.match(limited.stdout, /KEY +REASON\n3 +f0 = 1e\+300 overflows float32\n4 .*\n\(2 of 4; --limit for more\)/);
    const show = JSON.parse((await cli(db, ['runs', 'show', id, '--json'])).stdout) as {
      rejectsByReason: Record<string, number>;
    };
    assert.deepEqual(show.rejectsByReason, {
      'f0 overflows float32': 2,
      'model output -Infinity in score': 1,
      'model output NaN in score': 1,
    });
    const api = await startApi(db);
    try {
      const rejected = await request<{ error: string; rejected?: string }>(api.base, '/v1/predictions/logs/5');
      assert.equal(rejected.status, 404);
      assert.equal(rejected.body.rejected, 'model output NaN in score');
      const absent = await request<{ error: string; rejected?: string }>(api.base, '/v1/predictions/logs/99999');
      assert.equal(absent.status, 404);
      assert.deepEqual(Object.keys(absent.body), ['error']);
    } finally {
      await api.close();
    }
    assert.equal((await cli(db, ['rejects', '99999'])).code, 2);
  });
});
