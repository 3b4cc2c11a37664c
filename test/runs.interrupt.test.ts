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

const DATE = '2026-11-18';
const ROWS = 20_000;

interface RunRow {
  id: string;
  status: string;
  error: string | null;
}

async function runsOf(db: TestDb, job: string): Promise<RunRow[]> {
  const { rows } = await db.pool.query<RunRow>('SELECT id::text, status, error FROM prescore.runs WHERE job = $1 ORDER BY id', [
    job,
  ]);
  return rows;
}

/** Ctrl-C and kill -9 of `prescore run`: the date is never blocked, done work is kept. */
describe('an interrupted local run', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('interrupt');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => db.drop());

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`${signal} marks the run failed and exits at once; runs retry resumes it, the next run goes straight through`, async () => {
      const job = `int-${signal.toLowerCase()}`;
      writeJob(db, jobSpec(job, 'lin@champion', 'feats', featureNames(4)));
      const child = startCli(db, ['run', job, '--date', DATE]);
      const run = await waitFor('the run to be planned', async () => (await runsOf(db, job))[0]);
      // Chunks wait on this lock (their FOR UPDATE of the chunk row): the run is mid-flight.
      const lock = await holdLock(db.pool, 'LOCK TABLE prescore.run_chunks IN EXCLUSIVE MODE');
      try {
        await new Promise((r) => setTimeout(r, 300));
        const sent = Date.now();
        child.kill(signal);
        const r = await child.done;
        assert.ok(Date.now() - sent < 5000, `exited after ${Date.now() - sent} ms`);
        assert.equal(r.code, signal === 'SIGINT' ? 130 : 143, r.stderr);
        assert.match(r.lastError, new RegExp(`^error: interrupted by ${signal}: run ${run.id} marked failed`));
        const [after] = await runsOf(db, job);
        assert.equal(after!.status, 'failed');
        assert.match(after!.error!, new RegExp(`interrupted by ${signal}; prescore runs retry ${run.id} resumes it`));
      } finally {
        await lock.release();
      }
      const retried = await cli(db, ['runs', 'retry', run.id]);
      assert.equal(retried.code, 0, retried.stderr);
      const served = await servedPredictions(db.pool, job, DATE);
      assert.equal(served.runId, run.id);
      assert.equal(served.rows.size, ROWS);
      const again = await cli(db, ['run', job, '--date', DATE, '--json']);
      assert.equal(again.code, 0, again.stderr);
    });
  }

  test('Ctrl-C during backfill --local marks its run failed; the same backfill again resumes it', async () => {
    const job = 'int-backfill';
    writeJob(db, jobSpec(job, 'lin@champion', 'feats', featureNames(4)));
    const child = startCli(db, ['backfill', job, '--from', DATE, '--to', DATE, '--local']);
    const run = await waitFor('the run to be planned', async () => (await runsOf(db, job))[0]);
    const lock = await holdLock(db.pool, 'LOCK TABLE prescore.run_chunks IN EXCLUSIVE MODE');
    try {
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      const r = await child.done;
      assert.equal(r.code, 130, r.stderr);
      assert.match(r.lastError, new RegExp(`^error: interrupted by SIGINT: run ${run.id} marked failed`));
      assert.equal((await runsOf(db, job))[0]!.status, 'failed');
    } finally {
      await lock.release();
    }
    const again = await cli(db, ['backfill', job, '--from', DATE, '--to', DATE, '--local']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await servedPredictions(db.pool, job, DATE)).runId, run.id);
  });

  test('kill -9 while finalizing: the next run takes the run over once its heartbeat is stale, and publishes it', async () => {
    const job = 'int-finalize';
    writeJob(db, jobSpec(job, 'lin@champion', 'feats', featureNames(4)));
    // Publishing waits on this lock, so the run sits in 'finalizing' when it is killed.
    const lock = await holdLock(db.pool, 'LOCK TABLE prescore.serving IN ACCESS EXCLUSIVE MODE');
    let runId: string;
    try {
      const child = startCli(db, ['run', job, '--date', DATE]);
      const run = await waitFor(
        'the run to finalize',
        async () => (await runsOf(db, job)).find((r) => r.status === 'finalizing'),
        60_000,
      );
      runId = run.id;
      child.kill('SIGKILL');
      await child.done;
    } finally {
      await lock.release();
    }
    const blocked = await cli(db, ['run', job, '--date', DATE]);
    assert.equal(blocked.code, 2, 'a fresh heartbeat still counts as a live process');
    assert.match(blocked.lastError, /active run/);
    // A minute without heartbeat, as after a real crash.
    await db.pool.query(`UPDATE prescore.runs SET heartbeat_at = now() - interval '2 minutes' WHERE id = $1::bigint`, [runId]);
    const resumed = await cli(db, ['run', job, '--date', DATE, '--json'], { PRESCORE_LOG_LEVEL: 'info' });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming a run abandoned by its process/);
    assert.equal((JSON.parse(resumed.stdout) as { id: string; status: string }).id, runId);
    const served = await servedPredictions(db.pool, job, DATE);
    assert.equal(served.runId, runId);
    assert.equal(served.rows.size, ROWS);
  });
});
