import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cli, createTestDb, registerModel, featureNames, jobSpec, seedFeatures, writeJob, type TestDb } from './helpers.js';

/** Backfill: one run per date, published dates skipped, resumable, --dry-run, --force. */
describe('prescore backfill', () => {
  let db: TestDb;
  const dates = ['2026-10-01', '2026-10-02', '2026-10-03', '2026-10-04'];
  before(async () => {
    db = await createTestDb('backfill');
    for (const [i, date] of dates.entries())
      await seedFeatures(db.pool, 'feats', { rows: 2500 + i * 1000, features: 4, date, salt: i });
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, jobSpec('bf', 'lin@champion', 'feats', featureNames(4)));
  });
  after(async () => db.drop());

  const published = async () =>
    (await db.pool.query<{ date: string }>(`SELECT date::text FROM prescore.serving WHERE job = 'bf' ORDER BY date`)).rows.map(
      (r) => r.date,
    );

  test('--dry-run prints dates, rows and chunks and runs nothing', async () => {
    const r = await cli(db, ['backfill', 'bf', '--from', '2026-10-01', '--to', '2026-10-05', '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/));
    assert.deepEqual(lines.slice(1), [
      ['2026-10-01', '2,500', '3', 'run'],
      ['2026-10-02', '3,500', '4', 'run'],
      ['2026-10-03', '4,500', '5', 'run'],
      ['2026-10-04', '5,500', '6', 'run'],
      ['2026-10-05', '0', '0', 'skip', '(no', 'rows)'],
    ]);
    assert.deepEqual(await published(), []);
  });

  test('runs each date once; running it again skips what is published; --force re-scores', async () => {
    // An interrupted earlier backfill: one date already published, one run failed half way.
    const first = await cli(db, ['run', 'bf', '--date', '2026-10-02', '--json']);
    const firstId = (JSON.parse(first.stdout) as { id: string }).id;
    await db.pool.query(`UPDATE feats SET f1 = 'NaN' WHERE as_of = '2026-10-03' AND id = 4000`);
    writeJob(db, jobSpec('bf', 'lin@champion', 'feats', featureNames(4), { onBadRow: 'fail' }));
    const broken = await cli(db, ['run', 'bf', '--date', '2026-10-03']);
    assert.notEqual(broken.code, 0);
    await db.pool.query(`UPDATE feats SET f1 = 0.25 WHERE as_of = '2026-10-03' AND id = 4000`);
    writeJob(db, jobSpec('bf', 'lin@champion', 'feats', featureNames(4)));

    const r = await cli(db, ['backfill', 'bf', '--from', '2026-10-01', '--to', '2026-10-04', '--local', '--concurrency', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /backfill bf 2026-10-01\.\.2026-10-04: .*3 published.*1 skipped \(published\)|1 skipped \(published\).*3 published/,
    );
    assert.deepEqual(await published(), dates);
    // The failed run of 2026-10-03 was resumed, not replaced by a new run.
    const runs3 = await db.pool.query(`SELECT id, status FROM prescore.runs WHERE job = 'bf' AND date = '2026-10-03'`);
    assert.deepEqual(
      runs3.rows.map((x) => x.status),
      ['published'],
    );
    const serving2 = await db.pool.query(`SELECT run_id::text FROM prescore.serving WHERE job = 'bf' AND date = '2026-10-02'`);
    assert.equal(serving2.rows[0].run_id, firstId);

    const again = await cli(db, ['backfill', 'bf', '--from', '2026-10-01', '--to', '2026-10-04', '--local']);
    assert.match(again.stdout, /4 skipped \(published\); 0 rows/);
    const forced = await cli(db, ['backfill', 'bf', '--from', '2026-10-02', '--to', '2026-10-02', '--local', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    const serving2b = await db.pool.query(`SELECT run_id::text FROM prescore.serving WHERE job = 'bf' AND date = '2026-10-02'`);
    assert.notEqual(serving2b.rows[0].run_id, firstId);
  });

  test('bad ranges are refused', async () => {
    const r = await cli(db, ['backfill', 'bf', '--from', '2026-10-05', '--to', '2026-10-01']);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /--from 2026-10-05 is after --to 2026-10-01/);
  });

  test('retainDays: dates older than the newest published date minus retainDays stop being served and are dropped', async () => {
    writeJob(db, jobSpec('bf', 'lin@champion', 'feats', featureNames(4), { retainDays: 1 }));
    const r = await cli(db, ['run', 'bf', '--date', '2026-10-04']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await published(), ['2026-10-03', '2026-10-04']);
    const old = await db.pool.query<{ id: string }>(
      `SELECT id::text FROM prescore.runs WHERE job = 'bf' AND date < '2026-10-03' ORDER BY id`,
    );
    assert.ok(old.rows.length >= 2);
    for (const { id } of old.rows) {
      const t = await db.pool.query(`SELECT to_regclass($1) AS t`, [`prescore.predictions_r${id}`]);
      assert.equal(t.rows[0].t, null, `run ${id}'s table is dropped`);
    }
    const leftover = await db.pool.query(
      `SELECT count(*)::int AS n FROM prescore.predictions p JOIN prescore.runs r ON r.id = p.run_id WHERE r.date < '2026-10-03'`,
    );
    assert.equal(leftover.rows[0].n, 0);
  });
});
