import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
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
import { REDIS_URL, obliterate, queuePrefix, startWorkers, stopAll, type Proc } from './queue.helpers.js';

const ROWS = 200_000;

function restartPostgres(): void {
  const version = fs.readdirSync('/etc/postgresql')[0]!;
  execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'restart', '-m', 'fast'], { stdio: 'ignore' });
}

function restartRedis(): void {
  // The machine's Redis keeps nothing on disk: a restart loses every queue.
  execFileSync('redis-cli', ['-h', '127.0.0.1', 'shutdown', 'nosave'], { stdio: 'ignore' });
  execFileSync('redis-server', [
    '--daemonize',
    'yes',
    '--bind',
    '127.0.0.1',
    '-::1',
    '--port',
    '6379',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    '/var/lib/redis',
    '--logfile',
    '/var/log/redis/ci.log',
  ]);
}

const root = typeof process.getuid === 'function' && process.getuid() === 0;
const canRestart = root && fs.existsSync('/etc/postgresql') && !process.env.PRESCORE_TEST_NO_RESTARTS;

/**
 * PostgreSQL or Redis restarted while a run is in flight: the run finishes once the service is
 * back (retries with backoff; a lost queue is re-enqueued), with no lost and no duplicated rows.
 */
describe(
  'services restarting mid-run',
  { skip: canRestart ? false : 'needs root and a local PostgreSQL cluster to restart' },
  () => {
    let db: TestDb;
    let workers: Proc[] = [];
    const prefix = queuePrefix('restart');
    const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
    before(async () => {
      db = await createTestDb('restart');
      for (const date of ['2026-09-01', '2026-09-02']) await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date });
      await registerModel(db, 'lin', 'linear-float32');
      writeJob(db, jobSpec('rs', 'lin@champion', 'feats', featureNames(4), { chunkRows: 10_000 }));
      workers = startWorkers(db, 2, env);
      await waitFor('workers to start', () => workers.every((w) => /worker started/.test(w.output().stderr)));
    });
    after(async () => {
      await stopAll(workers);
      await obliterate(prefix);
      await db.drop();
    });

    async function queueRun(date: string): Promise<string> {
      const q = await cli(db, ['run', 'rs', '--date', date, '--queue', '--no-wait', '--json'], env);
      assert.equal(q.code, 0, q.stderr);
      return (JSON.parse(q.stdout) as { id: string }).id;
    }

    /** What the run's chunks and the workers were doing: the failure message of a run that did not end. */
    async function diagnosis(runId: string): Promise<string> {
      let chunks = '?';
      try {
        const c = await db.pool.query<{ status: string; n: number; attempts: number }>(
          `SELECT status, count(*)::int AS n, max(attempts)::int AS attempts FROM prescore.run_chunks WHERE run_id = $1 GROUP BY status`,
          [runId],
        );
        chunks = JSON.stringify(c.rows);
      } catch (err) {
        chunks = String(err);
      }
      const tails = workers.map((w, i) => `worker ${i}:\n${w.output().stderr.split('\n').slice(-25).join('\n')}`);
      return `chunks ${chunks}\n${tails.join('\n')}`;
    }

    async function assertPublishedOnce(runId: string, date: string): Promise<void> {
      const status = await waitFor(
        `run ${runId} to end`,
        async () => {
          try {
            const r = await db.pool.query(`SELECT status, error FROM prescore.runs WHERE id = $1`, [runId]);
            return ['published', 'failed'].includes(r.rows[0].status) ? r.rows[0] : undefined;
          } catch {
            return undefined; // the server is still coming back
          }
        },
        120_000,
        250,
      ).catch(async (err: unknown) => {
        throw new Error(`${String(err)}\n${await diagnosis(runId)}`);
      });
      assert.equal(status.status, 'published', status.error);
      const n = await db.pool.query(
        `SELECT count(*)::int AS n, count(DISTINCT key)::int AS d FROM prescore.predictions WHERE run_id = $1`,
        [runId],
      );
      assert.deepEqual(n.rows[0], { n: ROWS, d: ROWS });
      assert.equal((await servedPredictions(db.pool, 'rs', date)).runId, runId);
    }

    const doneChunks = async (runId: string) =>
      (await db.pool.query(`SELECT count(*)::int AS n FROM prescore.run_chunks WHERE run_id = $1 AND status = 'done'`, [runId]))
        .rows[0].n as number;

    test('PostgreSQL restarted while a run is in flight', async () => {
      const runId = await queueRun('2026-09-01');
      await waitFor('a first chunk to commit', async () => (await doneChunks(runId)) >= 1, 30_000, 10);
      assert.ok((await doneChunks(runId)) < 20, 'the restart happens mid-run');
      restartPostgres();
      await assertPublishedOnce(runId, '2026-09-01');
    });

    test('Redis restarted (its queues lost) while a run is in flight', async () => {
      const runId = await queueRun('2026-09-02');
      await waitFor('a first chunk to commit', async () => (await doneChunks(runId)) >= 1, 30_000, 10);
      assert.ok((await doneChunks(runId)) < 20, 'the restart happens mid-run');
      restartRedis();
      await assertPublishedOnce(runId, '2026-09-02');
      assert.ok(
        workers.some((w) => /re-enqueued runs missing from the queue/.test(w.output().stderr)),
        'a worker re-enqueued the run lost with Redis',
      );
    });
  },
);
