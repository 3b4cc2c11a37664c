import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { linearModel } from './fixtures/models.js';
import {
  assertClose,
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  logLines,
  seedFeatures,
  servedPredictions,
  sourceRows,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, type Proc, stopStartedWorkers } from './queue.helpers.js';

const ROWS = 300_000;
const CHALLENGER = linearModel(4, 7);

/**
 * Invariant 2 with real processes: three workers share a run of 300,000 rows; one is killed
 * with SIGKILL in the middle of a chunk, or while it holds the finalize job. The run still
 * publishes, with exactly one prediction per source row and per model: the job has a
 * challenger, whose rows are written in the same chunk transactions and published with the
 * champion's.
 */
describe('exactly once under kill -9', () => {
  let db: TestDb;
  let workers: Proc[] = [];
  const prefix = queuePrefix('once');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  before(async () => {
    db = await createTestDb('once');
    for (const date of ['2026-11-01', '2026-11-02']) await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date });
    await registerModel(db, 'lin', 'linear-float32');
    const challenger = path.join(db.jobsDir, 'lin-seed7.onnx');
    fs.writeFileSync(challenger, CHALLENGER.bytes);
    assert.equal((await cli(db, ['models', 'register', 'lin', challenger, '--alias', 'challenger'])).code, 0);
    writeJob(
      db,
      jobSpec('once', 'lin@champion', 'feats', featureNames(4), { chunkRows: 25_000, challengers: ['lin@challenger'] }),
    );
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db.drop();
  });

  async function assertExactlyOnce(runId: string, date: string): Promise<void> {
    const run = await waitFor(
      `run ${runId} to end`,
      async () => {
        const r = await db.pool.query(`SELECT status, rows_written, error FROM prescore.runs WHERE id = $1`, [runId]);
        return ['published', 'failed'].includes(r.rows[0].status) ? r.rows[0] : undefined;
      },
      60_000,
      200,
    );
    assert.equal(run.status, 'published', run.error);
    assert.equal(Number(run.rows_written), ROWS);
    const served = await servedPredictions(db.pool, 'once', date);
    assert.equal(served.runId, runId);
    const source = await sourceRows(db.pool, 'feats', 4, date);
    assert.equal(served.rows.size, source.size);
    const count = await db.pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT key)::int AS d FROM prescore.predictions WHERE run_id = $1`,
      [runId],
    );
    assert.deepEqual(count.rows[0], { n: ROWS, d: ROWS });
    // The challenger's rows: one per key, published with the run (reached through the attached parent).
    const { rows: challenger } = await db.pool.query<{ key: string; score: number }>(
      `SELECT key, score FROM prescore.challenger_predictions WHERE run_id = $1 AND slot = 1`,
      [runId],
    );
    assert.equal(challenger.length, ROWS);
    const challengerScores = new Map(challenger.map((r) => [r.key, r.score]));
    assert.equal(challengerScores.size, ROWS);
    const model = linearModel();
    for (const [key, x] of source) {
      const got = served.rows.get(key);
      assert.ok(got, `key ${key} missing`);
      assertClose(got.score!, model.expect(x).score!, 1e-5, key);
      assertClose(challengerScores.get(key)!, CHALLENGER.expect(x).score!, 1e-5, `challenger, key ${key}`);
    }
  }

  test('a worker killed in the middle of a chunk', async () => {
    workers = startWorkers(db, 3, env);
    await waitFor('workers to start', () => workers.every((w) => /worker started/.test(w.output().stderr)));
    const queued = await cli(db, ['run', 'once', '--date', '2026-11-01', '--queue', '--no-wait', '--json'], env);
    assert.equal(queued.code, 0, queued.stderr);
    const runId = (JSON.parse(queued.stdout) as { id: string }).id;
    // Wait until some worker has started a chunk it has not finished, then kill it.
    const victim = await waitFor(
      'a worker in the middle of a chunk',
      () =>
        workers.find((w) => {
          const lines = logLines(w.output().stderr);
          const started = lines.filter((l) => l.msg === 'chunk started').length;
          const finished = lines.filter((l) => l.msg === 'chunk finished').length;
          return started >= 1 && started > finished;
        }),
      30_000,
      5,
    );
    victim.kill('SIGKILL');
    const killed = await victim.done;
    assert.equal(killed.signal, 'SIGKILL');
    const lines = logLines(killed.stderr);
    assert.ok(
      lines.filter((l) => l.msg === 'chunk started').length > lines.filter((l) => l.msg === 'chunk finished').length,
      'the victim died with a chunk in flight',
    );
    await assertExactlyOnce(runId, '2026-11-01');
  });

  test('the worker holding the finalize job is killed', async () => {
    // Three workers again: the two survivors and a fresh one.
    workers = [...workers.filter((w) => w.exitCode() === null), ...startWorkers(db, 1, env)];
    assert.equal(workers.length, 3);
    await waitFor('workers to start', () => workers.every((w) => /worker started/.test(w.output().stderr)));
    const queued = await cli(db, ['run', 'once', '--date', '2026-11-02', '--queue', '--no-wait', '--json'], env);
    const runId = (JSON.parse(queued.stdout) as { id: string }).id;
    const victim = await waitFor(
      'a worker to take the finalize job',
      () => workers.find((w) => logLines(w.output().stderr).some((l) => l.msg === 'finalize started' && l.runId === runId)),
      60_000,
      2,
    );
    victim.kill('SIGKILL');
    await victim.done;
    assert.ok(
      !logLines(victim.output().stderr).some((l) => l.msg === 'published' && l.runId === runId),
      'killed before it published',
    );
    await assertExactlyOnce(runId, '2026-11-02');
  });
});
