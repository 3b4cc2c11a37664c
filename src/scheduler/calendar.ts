import { CronExpressionParser } from 'cron-parser';
import { addDays, localDate } from '../dates.js';

export interface Schedule {
  cron: string;
  timezone: string;
  dateOffsetDays: number;
  catchUpDays: number;
  /** The first partition date the schedule scores. */
  startDate?: string;
  /** Unset: catch up, except the dates of a pause; true: catch up those too; false: newest due date only. */
  catchUp?: boolean;
}

/** What the scheduler knows of a job beyond its file (prescore.job_schedules and the runs table). */
export interface ScheduleHistory {
  /** When a scheduler first saw the job, or its first run was created if earlier. */
  since: Date;
  /** When the job was last resumed after a pause; null if never paused. */
  resumedAt: Date | null;
}

/** Every fire of the cron in the last catchUpDays days up to `now`, with the date it scores. */
function dueFires(schedule: Schedule, now: Date): { at: Date; date: string }[] {
  const firstDay = addDays(localDate(now, schedule.timezone), -schedule.catchUpDays);
  const start = new Date(now.getTime() - (schedule.catchUpDays + 2) * 86_400_000);
  const expr = CronExpressionParser.parse(schedule.cron, { tz: schedule.timezone, currentDate: start, endDate: now });
  const fires: { at: Date; date: string }[] = [];
  while (expr.hasNext()) {
    const at = expr.next().toDate();
    if (at.getTime() > now.getTime()) break;
    const day = localDate(at, schedule.timezone);
    if (day >= firstDay) fires.push({ at, date: addDays(day, schedule.dateOffsetDays) });
  }
  return fires;
}

function distinctDates(fires: { date: string }[]): string[] {
  return [...new Set(fires.map((f) => f.date))].sort();
}

/**
 * The partition dates whose trigger time has come, from the calendar rather than from timer
 * callbacks: every fire of the cron (in its time zone) in the last catchUpDays days up to
 * `now`, as the date it scores. cron-parser resolves daylight saving: a 02:30 fire on the
 * spring-forward night happens at 03:30, and on the fall-back night once. Several fires on
 * one day score one date (the trigger identity is (job, date)).
 */
export function dueDates(schedule: Schedule, now: Date): string[] {
  return distinctDates(dueFires(schedule, now));
}

/**
 * The dates the scheduler triggers now: the due dates a job is owed. A job owes nothing from
 * before its start: its startDate, else the fires before a scheduler first saw it (a job added
 * at 12:00 with a 12:01 cron scores today at 12:01, not the days before). Pausing skips the
 * fires until the resume unless catchUp is true; catchUp false keeps only the newest date, as
 * Airflow's catchup=False does.
 */
export function triggerDates(schedule: Schedule, now: Date, history: ScheduleHistory): string[] {
  let fires = dueFires(schedule, now);
  const start = schedule.startDate;
  fires = start === undefined ? fires.filter((f) => f.at >= history.since) : fires.filter((f) => f.date >= start);
  const resumed = history.resumedAt;
  if (schedule.catchUp !== true && resumed) fires = fires.filter((f) => f.at >= resumed);
  const dates = distinctDates(fires);
  return schedule.catchUp === false ? dates.slice(-1) : dates;
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
