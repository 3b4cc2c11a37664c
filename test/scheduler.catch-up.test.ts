import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jobSchema } from '../src/definitions/schema.js';
import { dueDates, triggerDates, type Schedule } from '../src/scheduler/calendar.js';

/** Daily at 12:01 UTC, three days of catch-up: the job that scored the days before it existed. */
const daily: Schedule = { cron: '1 12 * * *', timezone: 'UTC', dateOffsetDays: 0, catchUpDays: 3 };
const at = (iso: string) => new Date(iso);

/** Which dates the scheduler triggers, with a fixed clock and a fixed history (calendar.triggerDates). */
describe('scheduler catch-up', () => {
  test('a new job does not score the dates before a scheduler first saw it, only the fire that comes', () => {
    const seen = { since: at('2026-11-23T12:00:00Z'), resumedAt: null };
    // The calendar alone owes three past days; the job did not exist then.
    assert.deepEqual(dueDates(daily, at('2026-11-23T12:00:30Z')), ['2026-11-20', '2026-11-21', '2026-11-22']);
    assert.deepEqual(triggerDates(daily, at('2026-11-23T12:00:30Z'), seen), []);
    assert.deepEqual(triggerDates(daily, at('2026-11-23T12:01:00Z'), seen), ['2026-11-23']);
    assert.deepEqual(triggerDates({ ...daily, catchUp: false }, at('2026-11-23T12:01:00Z'), seen), ['2026-11-23']);
  });

  test('startDate: the dates from it are owed, however recent the job; none before it', () => {
    const seen = { since: at('2026-11-23T12:00:00Z'), resumedAt: null };
    const s = { ...daily, startDate: '2026-11-21' };
    assert.deepEqual(triggerDates(s, at('2026-11-23T12:00:30Z'), seen), ['2026-11-21', '2026-11-22']);
    assert.deepEqual(triggerDates(s, at('2026-11-23T12:05:00Z'), seen), ['2026-11-21', '2026-11-22', '2026-11-23']);
    // A start in the future: nothing yet, even for a job seen long ago.
    const old = { since: at('2026-01-01T00:00:00Z'), resumedAt: null };
    assert.deepEqual(triggerDates({ ...daily, startDate: '2026-11-24' }, at('2026-11-23T13:00:00Z'), old), []);
    // Still bounded by catchUpDays.
    assert.deepEqual(triggerDates({ ...daily, startDate: '2026-01-01' }, at('2026-11-23T13:00:00Z'), old), [
      '2026-11-20',
      '2026-11-21',
      '2026-11-22',
      '2026-11-23',
    ]);
  });

  test('after downtime, catchUp true (and by default) fills the missed dates after the first run; false skips to the newest', () => {
    // First run on the 21st at 12:01; the scheduler was down from the 21st to the 23rd at 13:00.
    const history = { since: at('2026-11-21T12:01:00Z'), resumedAt: null };
    const now = at('2026-11-23T13:00:00Z');
    assert.deepEqual(triggerDates({ ...daily, catchUp: true }, now, history), ['2026-11-21', '2026-11-22', '2026-11-23']);
    assert.deepEqual(triggerDates(daily, now, history), ['2026-11-21', '2026-11-22', '2026-11-23']);
    assert.deepEqual(triggerDates({ ...daily, catchUp: false }, now, history), ['2026-11-23']);
  });

  test('a resume does not back-fill the paused dates unless catchUp is true', () => {
    // Paused on the 20th, resumed on the 23rd at 12:30, after that day's fire.
    const history = { since: at('2026-11-01T00:00:00Z'), resumedAt: at('2026-11-23T12:30:00Z') };
    assert.deepEqual(triggerDates(daily, at('2026-11-23T12:31:00Z'), history), []);
    assert.deepEqual(triggerDates(daily, at('2026-11-24T12:01:00Z'), history), ['2026-11-24']);
    assert.deepEqual(triggerDates({ ...daily, catchUp: false }, at('2026-11-24T12:01:00Z'), history), ['2026-11-24']);
    assert.deepEqual(triggerDates({ ...daily, catchUp: true }, at('2026-11-23T12:31:00Z'), history), [
      '2026-11-20',
      '2026-11-21',
      '2026-11-22',
      '2026-11-23',
    ]);
  });

  test('a new job across the spring-forward night: its first fire is the shifted 03:30, nothing before', () => {
    const berlin: Schedule = { cron: '30 2 * * *', timezone: 'Europe/Berlin', dateOffsetDays: 0, catchUpDays: 3 };
    const seen = { since: at('2026-03-28T23:00:00Z'), resumedAt: null }; // 00:00 CET on the 29th
    assert.deepEqual(triggerDates(berlin, at('2026-03-29T01:29:00Z'), seen), []);
    assert.deepEqual(triggerDates(berlin, at('2026-03-29T01:30:00Z'), seen), ['2026-03-29']);
  });

  test('the job schema takes startDate and catchUp and names a bad one', () => {
    const base = {
      name: 'j',
      model: 'm@champion',
      source: { table: 't', key: 'id', partition: 'as_of', features: ['a'] },
    };
    const ok = jobSchema.parse({ ...base, schedule: { cron: '0 2 * * *', startDate: '2026-11-23', catchUp: false } });
    assert.equal(ok.schedule?.startDate, '2026-11-23');
    assert.equal(ok.schedule?.catchUp, false);
    for (const startDate of ['2026-02-30', '23.11.2026', '']) {
      const bad = jobSchema.safeParse({ ...base, schedule: { cron: '0 2 * * *', startDate } });
      assert.equal(bad.success, false, startDate);
      assert.deepEqual(bad.error!.issues[0]!.path, ['schedule', 'startDate']);
    }
    assert.equal(jobSchema.safeParse({ ...base, schedule: { cron: '0 2 * * *', catchUp: 'yes' } }).success, false);
  });
});
