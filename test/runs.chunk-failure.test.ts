import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gatherModel } from './fixtures/models.js';
import {
  assertClose,
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  sourceRows,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, stopStartedWorkers } from './queue.helpers.js';

const DATE = '2026-11-05';

/**
 * A chunk that fails for good (the model throws on its rows) fails the run with the chunk's key
 * range and the cause; the previous run keeps serving. Then retry re-runs only that chunk.
 */
describe('a chunk that fails permanently', () => {
  let db: TestDb;

  let firstRun: string;
  const prefix = queuePrefix('fail');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  before(async () => {
    db = await createTestDb('chunkfail');
    await seedFeatures(db.pool, 'feats', { rows: 20_000, features: 4, date: DATE });
    await registerModel(db, 'gather', 'gather');
    writeJob(db, jobSpec('gj', 'gather@champion', 'feats', featureNames(4), { chunkRows: 2000 }));
    startWorkers(db, 2, env);
    const first = await cli(db, ['run', 'gj', '--date', DATE, '--queue', '--json'], env);
    assert.equal(first.code, 0, first.stderr);
    firstRun = (JSON.parse(first.stdout) as { id: string }).id;
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db.drop();
  });

  test('fails the run naming the key range and the cause; the previous run keeps serving', async () => {
    await db.pool.query(`UPDATE feats SET f0 = 50 WHERE id = 12345`);
    const r = await cli(db, ['run', 'gj', '--date', DATE, '--queue', '--json'], env);
    assert.equal(r.code, 1);
    assert.match(
      r.lastError,
      /^error: run \d+ failed: job gj 2026-11-05: chunk \d+ \(keys \[\d+, \d+\)\) of run \d+ failed: the model failed on the batch starting at key \d+: .*indices element out of data bounds, idx=50/,
    );
    const failedRun = (JSON.parse(r.stdout) as { id: string; status: string }).id;
    const chunk = await db.pool.query<{ lo: string; hi: string; status: string }>(
      `SELECT lo, hi, status FROM prescore.run_chunks WHERE run_id = $1 AND error IS NOT NULL`,
      [failedRun],
    );
    assert.equal(chunk.rowCount, 1);
    assert.ok(Number(chunk.rows[0]!.lo) <= 12345 && 12345 < Number(chunk.rows[0]!.hi));
    const served = await servedPredictions(db.pool, 'gj', DATE);
    assert.equal(served.runId, firstRun);
    assert.equal(served.rows.size, 20_000);

    // Fix the data and retry: only the chunks that were not done run again.
    const doneBefore = await db.pool.query<{ chunk_no: number; finished_at: Date }>(
      `SELECT chunk_no, finished_at FROM prescore.run_chunks WHERE run_id = $1 AND status = 'done' ORDER BY chunk_no`,
      [failedRun],
    );
    assert.ok(doneBefore.rows.length >= 1, 'some chunks were done before the retry');
    await db.pool.query(`UPDATE feats SET f0 = 1 WHERE id = 12345`);
    const retry = await cli(db, ['runs', 'retry', failedRun], env);
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stdout, new RegExp(`run ${failedRun} published`));
    // The chunks done before the retry were not scored again (same done-marker time).
    const doneAfter = await db.pool.query<{ chunk_no: number; finished_at: Date }>(
      `SELECT chunk_no, finished_at FROM prescore.run_chunks WHERE run_id = $1 AND chunk_no = ANY($2::int[]) ORDER BY chunk_no`,
      [failedRun, doneBefore.rows.map((r) => r.chunk_no)],
    );
    assert.deepEqual(doneAfter.rows, doneBefore.rows);
    const after = await servedPredictions(db.pool, 'gj', DATE);
    assert.equal(after.runId, failedRun);
    const model = gatherModel();
    const source = await sourceRows(db.pool, 'feats', 4, DATE);
    for (const [key, x] of source) assertClose(after.rows.get(key)!.score!, model.expect(x).score!, 1e-5, key);
  });
});
