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
  startCli,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, type Proc, stopStartedWorkers } from './queue.helpers.js';

const DATE = '2026-11-15';
const ROWS = 30_000;

/**
 * A chunk that hangs without any error (a query that sleeps, a lock that is never granted) is
 * abandoned after chunkTimeoutSeconds, rolled back and retried; the run then publishes every
 * row exactly once.
 */
describe('chunkTimeoutSeconds', () => {
  let db: TestDb;
  const prefix = queuePrefix('timeout');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  let workers: Proc[] = [];
  before(async () => {
    db = await createTestDb('chunk_timeout');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
    await db.pool.query('CREATE TABLE hang_flag (x int)');
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db?.drop();
  });

  test(
    'queue: a read that sleeps mid-chunk (after a batch was written) times out, is retried, and the run publishes',
    { timeout: 120_000 },
    async () => {
      // Key 29000 sleeps for an hour while hang_flag has a row: the chunk [20000, 30000] has
      // already scored and written its first batch of 8192 rows by then (uncommitted).
      writeJob(db, {
        name: 'sleepy',
        model: 'lin@champion',
        source: {
          query: `SELECT id, as_of, f0, f1, f2, f3 FROM feats
                 WHERE CASE WHEN id = 29000 AND EXISTS (SELECT 1 FROM hang_flag) THEN pg_sleep(3600) IS NOT NULL ELSE true END`,
          key: 'id',
          partition: 'as_of',
          features: featureNames(4),
        },
        chunkRows: 20_000,
        chunkTimeoutSeconds: 5,
      });
      const queued = await cli(db, ['run', 'sleepy', '--date', DATE, '--queue', '--no-wait', '--json'], env);
      assert.equal(queued.code, 0, queued.stderr);
      const runId = (JSON.parse(queued.stdout) as { id: string }).id;
      await db.pool.query('INSERT INTO hang_flag VALUES (1)');
      const started = Date.now();
      workers = startWorkers(db, 1, env, 2);
      await waitFor('the chunk to time out', () => /chunkTimeoutSeconds/.test(workers[0]!.output().stderr), 30_000);
      assert.ok(Date.now() - started >= 4000, 'not before its timeout');
      // The hung query was cancelled, not left sleeping.
      await waitFor(
        'the sleeping backend to be cancelled',
        async () =>
          (
            await db.pool.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(3600)%' AND pid <> pg_backend_pid()`,
            )
          ).rows[0]!.n === 0,
        10_000,
      );
      await db.pool.query('DELETE FROM hang_flag');
      const done = await waitFor(
        'the run to publish',
        async () => (await servedPredictions(db.pool, 'sleepy', DATE)).runId === runId || undefined,
        60_000,
      );
      assert.ok(done);
      const served = await servedPredictions(db.pool, 'sleepy', DATE);
      assert.equal(served.rows.size, ROWS);
      const { rows } = await db.pool.query<{ attempts: number }>(
        'SELECT max(attempts)::int AS attempts FROM prescore.run_chunks WHERE run_id = $1::bigint',
        [runId],
      );
      assert.ok(rows[0]!.attempts >= 2, `attempts ${rows[0]!.attempts}`);
    },
  );

  test(
    'local run: a write that waits forever on a lock times out, is retried in the process, and publishes',
    { timeout: 120_000 },
    async () => {
      writeJob(db, jobSpec('locked', 'lin@champion', 'feats', featureNames(4), { chunkRows: 5000, chunkTimeoutSeconds: 5 }));
      const child = startCli(db, ['run', 'locked', '--date', DATE, '--json']);
      const run = await waitFor('the run to be planned', async () => {
        const { rows } = await db.pool.query<{ id: string }>(`SELECT id::text FROM prescore.runs WHERE job = 'locked'`);
        return rows[0]?.id;
      });
      // The run's own table: its chunks' COPY waits on this lock, without an error.
      const lock = await holdLock(db.pool, `LOCK TABLE prescore.predictions_r${BigInt(run)} IN ACCESS EXCLUSIVE MODE`);
      try {
        await waitFor('a chunk to time out', () => /chunkTimeoutSeconds/.test(child.output().stderr), 30_000);
        await lock.release();
        const r = await child.done;
        assert.equal(r.code, 0, r.stderr);
        assert.equal((JSON.parse(r.stdout) as { status: string }).status, 'published');
      } finally {
        await lock.release();
      }
      const served = await servedPredictions(db.pool, 'locked', DATE);
      assert.equal(served.runId, run);
      assert.equal(served.rows.size, ROWS);
    },
  );

  test('a timeout out of range is refused naming the field', async () => {
    writeJob(db, jobSpec('bad-timeout', 'lin@champion', 'feats', featureNames(4), { chunkTimeoutSeconds: 1 }));
    const r = await cli(db, ['jobs', 'validate', 'bad-timeout']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /chunkTimeoutSeconds: must be at least 5/);
  });
});
