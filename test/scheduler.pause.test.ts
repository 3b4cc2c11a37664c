import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { resolveConfig } from '../src/config.js';
import { addDays } from '../src/dates.js';
import { queueBackend } from '../src/queue/connection.js';
import { startScheduler, type SchedulerHandle } from '../src/scheduler/scheduler.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  startCli,
  todayUtc,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, stopAll, type Proc } from './queue.helpers.js';

const today = todayUtc();
const tomorrow = addDays(today, 1);
const PAST = '2026-11-14';

/** `jobs pause` is kept in the database and every scheduler replica honours it at fire time. */
describe('pausing a scheduled job', () => {
  let db: TestDb;
  const prefix = queuePrefix('pause');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  const schedulers: SchedulerHandle[] = [];
  const procs: Proc[] = [];
  const logs: string[] = [];
  const log = pino({ level: 'info', base: undefined }, { write: (s: string) => void logs.push(s) });

  /** A scheduler replica in this process, with its own clock. */
  const replica = async (now?: () => Date) => {
    const config = resolveConfig({ ...env, DATABASE_URL: db.url, PRESCORE_JOBS_DIR: db.jobsDir });
    const s = await startScheduler(db.pool, queueBackend(config, db.url), config, log, now ? { now } : {});
    schedulers.push(s);
    return s;
  };
  const runDates = async (job: string) =>
    (await db.pool.query<{ date: string }>(`SELECT date::text FROM prescore.runs WHERE job = $1 ORDER BY date`, [job])).rows.map(
      (r) => r.date,
    );
  const paused = async (job: string) =>
    (await db.pool.query<{ paused: boolean }>(`SELECT paused FROM prescore.job_schedules WHERE job = $1`, [job])).rows[0]?.paused;

  before(async () => {
    db = await createTestDb('pause');
    for (const date of [PAST, today, tomorrow]) await seedFeatures(db.pool, 'feats', { rows: 2000, features: 4, date });
    await registerModel(db, 'lin', 'linear-float32');
    // Due at 00:00 UTC; startDate today, so today is owed as soon as a scheduler runs.
    const schedule = { cron: '0 0 * * *', timezone: 'UTC', catchUpDays: 1, startDate: today };
    writeJob(db, jobSpec('nightly', 'lin@champion', 'feats', featureNames(4), { schedule }));
    writeJob(db, jobSpec('eager', 'lin@champion', 'feats', featureNames(4), { schedule: { ...schedule, catchUp: true } }));
    writeJob(db, jobSpec('manual', 'lin@champion', 'feats', featureNames(4)));
  });
  after(async () => {
    for (const s of schedulers) await s.close();
    await stopAll(procs);
    await obliterate(prefix);
    await db?.drop();
  });

  test('jobs pause is stored in the database; a second pause, an unknown job and an unscheduled job are told apart', async () => {
    for (const job of ['nightly', 'eager']) {
      const r = await cli(db, ['jobs', 'pause', job]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^job ${job} paused: the schedulers skip its fires until prescore jobs resume ${job}`));
      assert.equal(await paused(job), true);
    }
    const again = await cli(db, ['jobs', 'pause', 'nightly']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /job nightly was already paused/);
    const unknown = await cli(db, ['jobs', 'pause', 'nosuch']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.lastError, /^error: no job "nosuch"/);
    const manual = await cli(db, ['jobs', 'pause', 'manual']);
    assert.equal(manual.code, 2);
    assert.match(manual.lastError, /^error: job manual has no schedule: there is nothing to pause/);
  });

  test('scheduler replicas skip a paused job at fire time and say so', async () => {
    // A replica as a real process, and two in this process.
    const proc = startCli(db, ['scheduler'], { ...env, PRESCORE_LOG_LEVEL: 'info' });
    procs.push(proc);
    await waitFor('the scheduler process to start', () => /scheduler started/.test(proc.output().stderr), 30_000);
    assert.match(proc.output().stderr, /job is paused; skipped/);
    const a = await replica();
    const b = await replica();
    await Promise.all([a.tick(), b.tick()]);
    assert.deepEqual(await runDates('nightly'), []);
    assert.deepEqual(await runDates('eager'), []);
    assert.ok(
      logs.some((l) => /job is paused; skipped/.test(l) && l.includes('"job":"nightly"') && l.includes(`"date":"${today}"`)),
      logs.join(''),
    );
    await stopAll(procs.splice(0));
  });

  test('resume: the paused date is not back-filled unless catchUp is true; the next fire runs', async () => {
    const r = await cli(db, ['jobs', 'resume', 'nightly']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^job nightly resumed; next fire ${tomorrow} 00:00 UTC \\(scores ${tomorrow}\\)`));
    assert.equal(await paused('nightly'), false);
    const e = await cli(db, ['jobs', 'resume', 'eager']);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /the paused dates are caught up/);
    const now = await replica();
    await now.tick();
    assert.deepEqual(await runDates('nightly'), [], 'today fired while nightly was paused');
    assert.deepEqual(await runDates('eager'), [today], 'eager (catchUp: true) catches up the paused date');
    // Tomorrow's fire comes after the resume: it runs.
    const later = await replica(() => new Date(`${tomorrow}T00:00:30Z`));
    await later.tick();
    assert.deepEqual(await runDates('nightly'), [tomorrow]);
    const notPaused = await cli(db, ['jobs', 'resume', 'nightly']);
    assert.match(notPaused.stdout, /job nightly was not paused/);
  });

  test('jobs list --json shows paused, the next fire in the time zone, and the newest published date', async () => {
    const run = await cli(db, ['run', 'manual', '--date', PAST]);
    assert.equal(run.code, 0, run.stderr);
    await cli(db, ['jobs', 'pause', 'eager']);
    const r = await cli(db, ['jobs', 'list', '--json']);
    assert.equal(r.code, 0, r.stderr);
    type Listed = {
      name: string;
      paused: boolean;
      nextFire: { at: string; local: string; date: string } | null;
      newestPublished: string | null;
    };
    const jobs = new Map((JSON.parse(r.stdout) as Listed[]).map((j) => [j.name, j]));
    assert.equal(jobs.get('eager')!.paused, true);
    assert.equal(jobs.get('nightly')!.paused, false);
    assert.deepEqual(jobs.get('nightly')!.nextFire, {
      at: `${tomorrow}T00:00:00.000Z`,
      local: `${tomorrow} 00:00 UTC`,
      date: tomorrow,
    });
    assert.equal(jobs.get('manual')!.nextFire, null);
    assert.equal(jobs.get('manual')!.newestPublished, PAST);
    assert.equal(jobs.get('nightly')!.newestPublished, null);
    const table = await cli(db, ['jobs', 'list']);
    assert.match(table.stdout, /^JOB\s+MODEL\s+SOURCE\s+SCHEDULE\s+NEXT FIRE\s+PAUSED\s+NEWEST PUBLISHED$/m);
    assert.match(table.stdout, new RegExp(`^eager .* ${tomorrow} 00:00 UTC \\(scores ${tomorrow}\\)\\s+yes\\s+-$`, 'm'));
    assert.match(table.stdout, new RegExp(`^manual .*-\\s+-\\s+${PAST}$`, 'm'));
  });

  test('jobs validate refuses a bad startDate, naming the field', async () => {
    writeJob(
      db,
      jobSpec('bad-start', 'lin@champion', 'feats', featureNames(4), {
        schedule: { cron: '0 0 * * *', startDate: '2026-13-01' },
      }),
    );
    const r = await cli(db, ['jobs', 'validate', 'bad-start']);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /schedule\.startDate: must be a calendar date in YYYY-MM-DD form/);
  });
});
