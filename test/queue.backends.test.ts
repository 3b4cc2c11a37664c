import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, type Proc, stopStartedWorkers } from './queue.helpers.js';

const DATE = '2026-11-10';

/**
 * The same queue path on both backends: Redis (REDIS_URL) and BullMQ's PostgreSQL backend in
 * prescore's own database (no REDIS_URL). Also: cancel, and SIGTERM draining a worker.
 */
describe('queue backends', () => {
  let db: TestDb;
  let workers: Proc[] = [];
  const prefix = queuePrefix('backends');
  before(async () => {
    db = await createTestDb('backends');
    await seedFeatures(db.pool, 'feats', { rows: 30_000, features: 4, date: DATE });
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, jobSpec('qb', 'lin@champion', 'feats', featureNames(4), { chunkRows: 5000 }));
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db.drop();
  });

  for (const backend of ['postgres', 'redis'] as const) {
    test(`run --queue on the ${backend} backend publishes every row`, async () => {
      const env = backend === 'redis' ? { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix } : { REDIS_URL: undefined };
      workers = startWorkers(db, 2, env);
      const r = await cli(db, ['run', 'qb', '--date', DATE, '--queue', '--json'], env);
      assert.equal(r.code, 0, r.stderr);
      const run = JSON.parse(r.stdout) as { id: string; status: string; rowsWritten: number };
      assert.equal(run.status, 'published');
      assert.equal(run.rowsWritten, 30_000);
      assert.equal((await servedPredictions(db.pool, 'qb', DATE)).rows.size, 30_000);
      if (backend === 'postgres') {
        const schema = await db.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'prescore_queue'`);
        assert.equal(schema.rowCount, 1, 'the queue lives in the prescore_queue schema of the same database');
      }
      for (const w of workers) w.kill('SIGTERM');
      const results = await Promise.all(workers.map((w) => w.done));
      for (const res of results) {
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stderr, /worker stopped/);
      }
      workers = [];
    });
  }

  test('cancel stops a queued run without publishing it', async () => {
    const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
    const before = await servedPredictions(db.pool, 'qb', DATE);
    // No worker is running: the run waits in the queue, and is cancelled there.
    const queued = await cli(db, ['run', 'qb', '--date', DATE, '--queue', '--no-wait', '--json'], env);
    const id = (JSON.parse(queued.stdout) as { id: string }).id;
    const c = await cli(db, ['runs', 'cancel', id], env);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, new RegExp(`run ${id} cancelled`));
    workers = startWorkers(db, 1, env);
    await waitFor('the worker to skip the cancelled chunks', async () => {
      const n = await db.pool.query(`SELECT count(*)::int AS n FROM prescore.run_chunks WHERE run_id = $1 AND status = 'done'`, [
        id,
      ]);
      const lines = workers[0]!.output().stderr.match(/"status":"inactive"/g)?.length ?? 0;
      return n.rows[0].n === 0 && lines >= 6 ? true : undefined;
    });
    const show = JSON.parse((await cli(db, ['runs', 'show', id, '--json'])).stdout) as { status: string };
    assert.equal(show.status, 'cancelled');
    assert.equal((await servedPredictions(db.pool, 'qb', DATE)).runId, before.runId);
    const again = await cli(db, ['runs', 'cancel', id]);
    assert.equal(again.code, 2);
    assert.match(again.lastError, /is cancelled; only a running or failed run can be cancelled/);
  });

  test('runs list shows history with status, model, rows, duration and throughput', async () => {
    const r = await cli(db, ['runs', 'list', '--job', 'qb', '--json']);
    const list = JSON.parse(r.stdout) as {
      status: string;
      modelVersion: number;
      rowsRead: number;
      durationMs: number | null;
      rowsPerSecond: number | null;
    }[];
    assert.deepEqual(
      list.map((x) => x.status),
      ['cancelled', 'published', 'superseded'],
    );
    assert.equal(list[1]!.rowsRead, 30_000);
    assert.ok(list[1]!.durationMs! > 0 && list[1]!.rowsPerSecond! > 0);
    const table = await cli(db, ['runs', 'list']);
    assert.match(table.stdout, /^RUN +JOB +DATE +SERVING +STATUS +MODEL +READ +WRITTEN +REJECTED +SECONDS +ROWS\/S +ERROR/);
  });
});
