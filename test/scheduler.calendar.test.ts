import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { localDate } from '../src/dates.js';
import { dueDates, nextFire } from '../src/scheduler/calendar.js';

const berlin = { cron: '30 2 * * *', timezone: 'Europe/Berlin', dateOffsetDays: 0, catchUpDays: 0 };

/** Due dates from the calendar with a fixed clock, including both daylight-saving nights. */
describe('scheduler calendar', () => {
  test('a daily 02:30 job is due once its fire time has passed, not before', () => {
    assert.deepEqual(dueDates(berlin, new Date('2026-11-23T01:29:00Z')), []); // 02:29 CET
    assert.deepEqual(dueDates(berlin, new Date('2026-11-23T01:30:00Z')), ['2026-11-23']);
  });

  test('spring-forward night (02:30 does not exist in Europe/Berlin): runs once, at 03:30', () => {
    // 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST.
    assert.deepEqual(dueDates(berlin, new Date('2026-03-29T00:59:00Z')), []); // 01:59 CET
    assert.deepEqual(dueDates(berlin, new Date('2026-03-29T01:29:00Z')), []); // 03:29 CEST
    assert.deepEqual(dueDates(berlin, new Date('2026-03-29T01:30:00Z')), ['2026-03-29']); // 03:30 CEST
    assert.deepEqual(dueDates(berlin, new Date('2026-03-29T21:00:00Z')), ['2026-03-29']);
  });

  test('fall-back night (02:30 happens twice): one date, due at the first 02:30', () => {
    // 2026-10-25: clocks go back from 03:00 CEST to 02:00 CET.
    assert.deepEqual(dueDates(berlin, new Date('2026-10-25T00:29:00Z')), []); // 02:29 CEST
    assert.deepEqual(dueDates(berlin, new Date('2026-10-25T00:30:00Z')), ['2026-10-25']); // first 02:30
    assert.deepEqual(dueDates(berlin, new Date('2026-10-25T01:45:00Z')), ['2026-10-25']); // after the second 02:30
  });

  test('catch-up covers missed days, bounded by catchUpDays', () => {
    const s = { ...berlin, catchUpDays: 3 };
    assert.deepEqual(dueDates(s, new Date('2026-03-30T12:00:00Z')), ['2026-03-27', '2026-03-28', '2026-03-29', '2026-03-30']);
    assert.deepEqual(dueDates({ ...s, catchUpDays: 1 }, new Date('2026-03-30T12:00:00Z')), ['2026-03-29', '2026-03-30']);
  });

  test('dateOffsetDays scores another date; several fires a day give one date', () => {
    assert.deepEqual(dueDates({ ...berlin, dateOffsetDays: -1 }, new Date('2026-11-23T12:00:00Z')), ['2026-11-22']);
    const hourly = { cron: '0 * * * *', timezone: 'America/New_York', dateOffsetDays: 0, catchUpDays: 0 };
    assert.deepEqual(dueDates(hourly, new Date('2026-11-23T12:30:00Z')), ['2026-11-23']);
    assert.equal(localDate(new Date('2026-11-23T03:00:00Z'), 'America/New_York'), '2026-11-22');
  });

  test("the next fire (what the dashboard shows) is strictly after now, in the job's time zone, across daylight saving", () => {
    const next = (now: string, s = berlin) => {
      const f = nextFire(s, new Date(now))!;
      return [f.at.toISOString(), f.date];
    };
    assert.deepEqual(next('2026-11-23T01:29:00Z'), ['2026-11-23T01:30:00.000Z', '2026-11-23']);
    // At the fire instant itself, the next one is tomorrow's.
    assert.deepEqual(next('2026-11-23T01:30:00Z'), ['2026-11-24T01:30:00.000Z', '2026-11-24']);
    // Spring-forward night: 02:30 does not exist, the fire is at 03:30 CEST (01:30 UTC).
    assert.deepEqual(next('2026-03-28T12:00:00Z'), ['2026-03-29T01:30:00.000Z', '2026-03-29']);
    // After it, summer time: 02:30 CEST is 00:30 UTC.
    assert.deepEqual(next('2026-03-29T12:00:00Z'), ['2026-03-30T00:30:00.000Z', '2026-03-30']);
    assert.deepEqual(next('2026-11-23T12:00:00Z', { ...berlin, dateOffsetDays: -1 }), ['2026-11-24T01:30:00.000Z', '2026-11-23']);
  });
});
