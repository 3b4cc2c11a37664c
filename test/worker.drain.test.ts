import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  cli,
  createTestDb,
  featureNames,
  holdLock,
  jobSpec,
  registerModel,
  seedFeatures,
  servedPredictions,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, type Proc, stopStartedWorkers } from './queue.helpers.js';

const DATE = '2026-11-12';
const ROWS = 3000;

/** The README's promise: SIGTERM finishes the chunks in flight, then the worker exits 0. */
describe('a worker drains on SIGTERM', () => {
  let db: TestDb;
  const prefix = queuePrefix('drain');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  let workers: Proc[] = [];
  before(async () => {
    db = await createTestDb('drain');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db?.drop();
  });

  test('a worker holding a chunk when SIGTERM arrives commits that chunk, then exits 0', { timeout: 120_000 }, async () => {
    writeJob(db, jobSpec('drain', 'lin@champion', 'feats', featureNames(4), { chunkRows: 5000 }));
    const queued = await cli(db, ['run', 'drain', '--date', DATE, '--queue', '--no-wait', '--json'], env);
    assert.equal(queued.code, 0, queued.stderr);
    const runId = (JSON.parse(queued.stdout) as { id: string }).id;
    // The chunk's write waits on this lock: the worker holds the chunk, mid-flight.
    const lock = await holdLock(db.pool, `LOCK TABLE prescore.predictions_r${BigInt(runId)} IN ACCESS EXCLUSIVE MODE`);
    try {
      workers = startWorkers(db, 1, env, 1);
      const worker = workers[0]!;
      await waitFor('the worker to take the chunk', () => /chunk started/.test(worker.output().stderr), 30_000);
      worker.kill('SIGTERM');
      await waitFor('the worker to start draining', () => /draining/.test(worker.output().stderr), 10_000);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(worker.exitCode(), null, 'the worker waits for its chunk');
      await lock.release();
      const r = await worker.done;
      assert.equal(r.code, 0, r.stderr);
      // From the ledger: the chunk it held is done, its rows committed.
      const { rows } = await db.pool.query<{ status: string; rows_written: string; finished_at: Date | null }>(
        'SELECT status, rows_written::text, finished_at FROM prescore.run_chunks WHERE run_id = $1::bigint',
        [runId],
      );
      assert.deepEqual(
        rows.map((c) => [c.status, c.rows_written, c.finished_at !== null]),
        [['done', String(ROWS), true]],
      );
    } finally {
      await lock.release();
    }
    // Another worker finalizes: every row exactly once.
    workers = startWorkers(db, 1, env, 1);
    await waitFor('the run to publish', async () => (await servedPredictions(db.pool, 'drain', DATE)).runId === runId, 60_000);
    assert.equal((await servedPredictions(db.pool, 'drain', DATE)).rows.size, ROWS);
  });
});
