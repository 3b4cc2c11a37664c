import { CronExpressionParser } from 'cron-parser';
import { addDays, localDate } from '../dates.js';

export interface Schedule {
  cron: string;
  timezone: string;
  dateOffsetDays: number;
  catchUpDays: number;
}

/**
 * The partition dates whose trigger time has come, from the calendar rather than from timer
 * callbacks: every fire of the cron (in its time zone) in the last catchUpDays days up to
 * `now`, as the date it scores. cron-parser resolves daylight saving: a 02:30 fire on the
 * spring-forward night happens at 03:30, and on the fall-back night once. Several fires on
 * one day score one date (the trigger identity is (job, date)).
 */
export function dueDates(schedule: Schedule, now: Date): string[] {
  const firstDay = addDays(localDate(now, schedule.timezone), -schedule.catchUpDays);
  const start = new Date(now.getTime() - (schedule.catchUpDays + 2) * 86_400_000);
  const expr = CronExpressionParser.parse(schedule.cron, { tz: schedule.timezone, currentDate: start, endDate: now });
  const dates = new Set<string>();
  while (expr.hasNext()) {
    const fire = expr.next().toDate();
    if (fire.getTime() > now.getTime()) break;
    const day = localDate(fire, schedule.timezone);
    if (day >= firstDay) dates.add(addDays(day, schedule.dateOffsetDays));
  }
  return [...dates].sort();
}

/**
 * The next time the cron fires after `now` (in its time zone, daylight saving resolved as
 * dueDates does) and the partition date that fire scores; null when the expression never
 * fires again.
 */
export function nextFire(
  schedule: Pick<Schedule, 'cron' | 'timezone' | 'dateOffsetDays'>,
  now: Date,
): { at: Date; date: string } | null {
  const expr = CronExpressionParser.parse(schedule.cron, { tz: schedule.timezone, currentDate: now });
  if (!expr.hasNext()) return null;
  const at = expr.next().toDate();
  return { at, date: addDays(localDate(at, schedule.timezone), schedule.dateOffsetDays) };
}
