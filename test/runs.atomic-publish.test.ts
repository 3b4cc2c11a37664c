import assert from 'node:assert/strict';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { linearModel } from './fixtures/models.js';
import {
  MODELS_DIR,
  assertClose,
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  sourceRows,
  startCli,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-22';
const ROWS = 120_000;

/** Invariant 1: readers see the previous run until the new one publishes, and after it fails. */
describe('atomic publish', () => {
  let db: TestDb;
  let firstRun: string;
  before(async () => {
    db = await createTestDb('publish');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
    const r = await cli(db, [
      'models',
      'register',
      'm',
      path.join(MODELS_DIR, 'linear-float32.onnx'),
      '--alias',
      'champion',
      '--version',
      '1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    writeJob(db, jobSpec('pub', 'm@champion', 'feats', featureNames(4), { chunkRows: 1000 }));
    const run = await cli(db, ['run', 'pub', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    firstRun = (JSON.parse(run.stdout) as { id: string }).id;
  });
  after(async () => db.drop());

  async function assertServesFirstRun(): Promise<void> {
    const served = await servedPredictions(db.pool, 'pub', DATE);
    assert.equal(served.runId, firstRun);
    assert.equal(served.rows.size, ROWS);
    const model = linearModel();
    const source = await sourceRows(db.pool, 'feats', 4, DATE);
    for (const key of ['1', '777', String(ROWS)])
      assertClose(served.rows.get(key)!.score!, model.expect(source.get(key)!).score!, 1e-5, key);
  }

  test('while a run is in flight, and after its process is killed, the previous run answers', async () => {
    // A second model version behind the alias, so the new run would produce other numbers.
    await registerModel(db, 'm', 'linear-b1');
    const child = startCli(db, ['run', 'pub', '--date', DATE], { PRESCORE_CHUNK_CONCURRENCY: '1' });
    let done = 0;
    for (let i = 0; i < 400 && done < 2; i++) {
      await sleep(50);
      const r = await db.pool.query(
        `SELECT count(*)::int AS n FROM prescore.run_chunks c JOIN prescore.runs r ON r.id = c.run_id
                                      WHERE r.id > $1 AND c.status = 'done'`,
        [firstRun],
      );
      done = r.rows[0].n;
    }
    assert.ok(done >= 2, 'the second run should have committed some chunks');
    await assertServesFirstRun();
    child.kill('SIGKILL');
    const result = await child.done;
    assert.equal(result.signal, 'SIGKILL');
    const runs = await db.pool.query(`SELECT status FROM prescore.runs WHERE id > $1`, [firstRun]);
    assert.deepEqual(
      runs.rows.map((r) => r.status),
      ['running'],
    );
    await assertServesFirstRun();
    // Nothing of the killed run is visible through the partitioned table either.
    const leaked = await db.pool.query(`SELECT count(*)::int AS n FROM prescore.predictions WHERE run_id > $1`, [firstRun]);
    assert.equal(leaked.rows[0].n, 0);
    await db.pool.query(`UPDATE prescore.runs SET status = 'cancelled', finished_at = now() WHERE id > $1`, [firstRun]);
  });

  test('a run that fails leaves the previous run serving', async () => {
    await db.pool.query(`UPDATE feats SET f2 = 'NaN' WHERE id = $1`, [ROWS - 5]);
    writeJob(db, jobSpec('pub', 'm@champion', 'feats', featureNames(4), { chunkRows: 1000, onBadRow: 'fail' }));
    const run = await cli(db, ['run', 'pub', '--date', DATE]);
    assert.notEqual(run.code, 0);
    assert.match(run.lastError, /key \d+: NaN in column f2/);
    await assertServesFirstRun();
    await db.pool.query(`UPDATE feats SET f2 = 0.5 WHERE id = $1`, [ROWS - 5]);
  });

  test('a successful run swaps the serving pointer to itself in one step', async () => {
    writeJob(db, jobSpec('pub', 'm@champion', 'feats', featureNames(4), { chunkRows: 1000 }));
    const run = await cli(db, ['run', 'pub', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const id = (JSON.parse(run.stdout) as { id: string }).id;
    const served = await servedPredictions(db.pool, 'pub', DATE);
    assert.equal(served.runId, id);
    assert.equal(served.rows.size, ROWS);
    const statuses = await db.pool.query(`SELECT id::text, status FROM prescore.runs WHERE job = 'pub' ORDER BY id`);
    assert.equal(statuses.rows.find((r) => r.id === firstRun)!.status, 'superseded');
  });

  test('runs past keepRuns are detached and dropped; the serving run stays', async () => {
    writeJob(db, jobSpec('pub', 'm@champion', 'feats', featureNames(4), { chunkRows: 1000, keepRuns: 1 }));
    const before = await servedPredictions(db.pool, 'pub', DATE);
    const run = await cli(db, ['run', 'pub', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const id = (JSON.parse(run.stdout) as { id: string }).id;
    const tables = await db.pool.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'prescore' AND c.relname LIKE 'predictions_r%' AND c.relkind = 'r'`,
    );
    assert.deepEqual(
      tables.rows.map((r) => r.relname),
      [`predictions_r${id}`],
    );
    assert.notEqual(before.runId, id);
    const served = await servedPredictions(db.pool, 'pub', DATE);
    assert.equal(served.runId, id);
    assert.equal(served.rows.size, ROWS);
  });
});
