import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import {
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  seedFeatures,
  startCli,
  todayUtc,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, stopAll, type Proc } from './queue.helpers.js';

/** Invariant 3: three schedulers and a CLI trigger the same (job, date) at once: one run. */
describe('one run per trigger', () => {
  let db: TestDb;
  const procs: Proc[] = [];
  const prefix = queuePrefix('trigger');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  const today = todayUtc();
  before(async () => {
    db = await createTestDb('trigger');
    await seedFeatures(db.pool, 'feats', { rows: 20_000, features: 4, date: today });
    await registerModel(db, 'lin', 'linear-float32');
    // Due every day at 00:00 UTC and starting today, so today's date is owed as soon as a
    // scheduler starts (without startDate a new job owes nothing before its first sighting).
    writeJob(
      db,
      jobSpec('nightly', 'lin@champion', 'feats', featureNames(4), {
        schedule: { cron: '0 0 * * *', timezone: 'UTC', catchUpDays: 0, startDate: today },
      }),
    );
  });
  after(async () => {
    await stopAll(procs);
    await obliterate(prefix);
    await db.drop();
  });

  test('3 schedulers + `prescore run` at the same moment yield one run, which publishes', async () => {
    const schedulers = [1, 2, 3].map(() => startCli(db, ['scheduler'], { ...env, PRESCORE_LOG_LEVEL: 'info' }));
    procs.push(...schedulers);
    const manual = await cli(db, ['run', 'nightly', '--date', today, '--queue', '--no-wait', '--json'], env);
    assert.equal(manual.code, 0, manual.stderr);
    await waitFor('schedulers to start', () => schedulers.every((s) => /scheduler started/.test(s.output().stderr)), 30_000);
    await sleep(500);
    const runs = await db.pool.query(`SELECT id::text, trigger FROM prescore.runs WHERE job = 'nightly' AND date = $1::date`, [
      today,
    ]);
    assert.equal(runs.rowCount, 1, JSON.stringify(runs.rows));
    assert.equal((JSON.parse(manual.stdout) as { id: string }).id, runs.rows[0].id);
    procs.push(...startWorkers(db, 1, env, 2));
    await waitFor(
      'the run to publish',
      async () =>
        (await db.pool.query(`SELECT 1 FROM prescore.serving WHERE job = 'nightly' AND date = $1::date`, [today])).rowCount,
      60_000,
      200,
    );
    const after = await db.pool.query(`SELECT count(*)::int AS n FROM prescore.runs WHERE job = 'nightly'`);
    assert.equal(after.rows[0].n, 1);
  });
});
