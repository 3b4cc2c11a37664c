import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  assertClose,
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { linearModel } from './fixtures/models.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, stopAll, type Proc, stopStartedWorkers } from './queue.helpers.js';

const DATE = '2026-11-14';

/** What an operator meets in the first week: exit codes, messages, help, and quiet failures. */
describe('operator-facing behaviour', () => {
  let db: TestDb;
  const prefix = queuePrefix('operator');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  let workers: Proc[] = [];
  before(async () => {
    db = await createTestDb('operator');
    await seedFeatures(db.pool, 'feats', { rows: 4000, features: 4, date: DATE });
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db?.drop();
  });

  test('an unknown command or a missing argument exits 2 with `error: ...` as the last line', async () => {
    for (const [args, message] of [
      [['nosuch'], /^error: unknown command 'nosuch' \(see prescore --help/],
      [['run'], /^error: missing required argument 'job'/],
      [['runs', 'list', '--nope'], /^error: unknown option '--nope'/],
    ] as const) {
      const r = await cli(db, [...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.lastError, message);
    }
    const help = await cli(db, ['runs', 'list', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--limit <n>/);
    assert.match(help.stdout, /DATABASE_URL/);
    assert.match(help.stdout, /REDIS_URL/);
    assert.match(help.stdout, /PRESCORE_JOBS_DIR/);
  });

  test('--verbose works before and after the command', async () => {
    for (const args of [
      ['--verbose', 'runs', 'show', '999'],
      ['runs', 'show', '999', '--verbose'],
    ]) {
      const r = await cli(db, args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.lastError, /^error: run 999 does not exist/);
      assert.match(r.stderr, /InputError: run 999 does not exist[\s\S]*\n\s+at /, 'a stack trace with --verbose');
    }
  });

  test('a cron field out of range is named; several problems end with a line that says where they are', async () => {
    writeJob(db, jobSpec('cronny', 'lin@champion', 'feats', featureNames(4), { schedule: { cron: '0 25 * * *' } }));
    const r = await cli(db, ['jobs', 'validate', 'cronny']);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /schedule\.cron: hour 25 is out of range 0-23 in "0 25 \* \* \*"/);
    writeJob(db, jobSpec('many', 'lin@nope', 'feats', ['f0', 'zz']));
    const many = await cli(db, ['jobs', 'validate', 'many']);
    assert.equal(many.code, 2);
    assert.match(many.lastError, /: \d+ problems \(listed above\)$/);
  });

  test('a column renamed under a queued run fails it at once, with the message jobs validate gives', async () => {
    writeJob(db, jobSpec('renamed', 'lin@champion', 'feats', featureNames(4)));
    const queued = await cli(db, ['run', 'renamed', '--date', DATE, '--queue', '--no-wait', '--json'], env);
    assert.equal(queued.code, 0, queued.stderr);
    const runId = (JSON.parse(queued.stdout) as { id: string }).id;
    await db.pool.query('ALTER TABLE feats RENAME COLUMN f3 TO f3_renamed');
    try {
      const started = Date.now();
      workers = startWorkers(db, 1, env, 2);
      const run = await waitFor(
        'the run to fail',
        async () => {
          const { rows } = await db.pool.query<{ status: string; error: string }>(
            'SELECT status, error FROM prescore.runs WHERE id = $1::bigint',
            [runId],
          );
          return rows[0]!.status === 'failed' ? rows[0] : undefined;
        },
        30_000,
      );
      assert.ok(Date.now() - started < 20_000, `failed after ${Date.now() - started} ms (retried as if transient?)`);
      assert.match(run.error, /source\.features\[3\]: column "f3" does not exist in public\.feats|column "f3" does not exist/);
      const { rows } = await db.pool.query<{ attempts: number }>(
        'SELECT max(attempts)::int AS attempts FROM prescore.run_chunks WHERE run_id = $1::bigint',
        [runId],
      );
      assert.equal(rows[0]!.attempts, 1, 'no retry of a permanent error');
      assert.doesNotMatch(workers[0]!.output().stderr, /will retry/);
    } finally {
      await db.pool.query('ALTER TABLE feats RENAME COLUMN f3_renamed TO f3');
    }
  });

  test('cancelling a queued run ends its pending work quietly', async () => {
    writeJob(db, jobSpec('cancelled', 'lin@champion', 'feats', featureNames(4), { chunkRows: 1000 }));
    await stopAll(workers);
    workers = [];
    // Its chunks wait on this lock, so the run is in flight when it is cancelled.
    const holder = await db.pool.connect();
    try {
      const queued = await cli(db, ['run', 'cancelled', '--date', DATE, '--queue', '--no-wait', '--json'], env);
      assert.equal(queued.code, 0, queued.stderr);
      const runId = (JSON.parse(queued.stdout) as { id: string }).id;
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE prescore.predictions_r${BigInt(runId)} IN ACCESS EXCLUSIVE MODE`);
      workers = startWorkers(db, 1, env, 2);
      const mark = workers[0]!.output().stderr.length;
      await new Promise((r) => setTimeout(r, 1500));
      const c = await cli(db, ['runs', 'cancel', runId], env);
      assert.equal(c.code, 0, c.stderr);
      await holder.query('COMMIT');
      await new Promise((r) => setTimeout(r, 4000));
      const log = workers[0]!.output().stderr.slice(mark);
      assert.doesNotMatch(log, /will retry|"level":50/, log.slice(0, 2000));
      const { rows } = await db.pool.query<{ status: string }>('SELECT status FROM prescore.runs WHERE id = $1::bigint', [runId]);
      assert.equal(rows[0]!.status, 'cancelled');
    } finally {
      holder.release();
    }
  });

  test('runs list: a long error ends with an ellipsis, an unknown job is said so', async () => {
    const r = await cli(db, ['runs', 'list', '--job', 'renamed']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /failed .*…$/m);
    const none = await cli(db, ['runs', 'list', '--job', 'nosuch']);
    assert.equal(none.code, 2);
    assert.match(none.lastError, /^error: no job "nosuch": no file nosuch\.json in .* and no runs/);
  });

  test("the demo job is not in the jobs directory: validating a user's jobs never trips over it", async () => {
    const r = await cli(db, ['jobs', 'list', '--json'], { PRESCORE_JOBS_DIR: 'jobs' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), []);
  });

  test('run --sample scores a few rows in memory, prints features and outputs, and stores nothing', async () => {
    writeJob(db, jobSpec('sampled', 'lin@champion', 'feats', featureNames(4)));
    const before = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM prescore.runs')).rows[0]!.n;
    const r = await cli(db, ['run', 'sampled', '--date', DATE, '--sample', '5', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as { key: string; features: number[]; score: number; rejected: string | null }[];
    assert.deepEqual(
      rows.map((x) => x.key),
      ['1', '2', '3', '4', '5'],
    );
    const model = linearModel();
    for (const x of rows) {
      assert.equal(x.rejected, null);
      assertClose(x.score, model.expect(x.features).score!, 1e-5, x.key);
    }
    const text = await cli(db, ['run', 'sampled', '--date', DATE, '--sample', '3']);
    assert.match(text.stdout, /KEY +f0 +f1 +f2 +f3 +SCORE/);
    assert.match(text.stdout, /3 rows of sampled 2026-11-14, model lin v1; nothing stored/);
    assert.equal((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM prescore.runs')).rows[0]!.n, before);
    assert.equal((await cli(db, ['run', 'sampled', '--sample', '0'])).code, 2);
  });
});
