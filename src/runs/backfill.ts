import type { Pool } from '../db/pool.js';
import { latestRun } from '../db/sql/runs.js';
import { publishedDates } from '../db/sql/serving.js';
import { checkDate, dateRange } from '../dates.js';
import type { ResolvedJob } from '../definitions/check.js';
import { ActiveRunError, InputError, NoRowsError } from '../errors.js';
import { countSourceRows } from '../source/plan.js';
import { retryRun } from './control.js';
import { planRun } from './plan.js';

const MAX_DAYS = 3660;

/** The dates of a backfill, both ends included; refused when reversed or longer than ten years. */
export function backfillDates(from: string, to: string): string[] {
  checkDate(from, '--from');
  checkDate(to, '--to');
  if (from > to) throw new InputError(`--from ${from} is after --to ${to}`);
  const dates = dateRange(from, to);
  if (dates.length > MAX_DAYS) throw new InputError(`a backfill covers at most ${MAX_DAYS} days`);
  return dates;
}

export type DateStart =
  | { date: string; skipped: 'published' | 'no rows' | 'held' }
  | { date: string; runId: string; how: 'followed' | 'retried' | 'planned' };

/**
 * Starts one date of a backfill, resuming rather than restarting: a published date is skipped
 * (unless `force`), an active run is followed, a failed run is retried (its done chunks stay),
 * and a new run is planned only when there is none to continue.
 */
export async function startDate(
  pool: Pool,
  job: ResolvedJob,
  date: string,
  options: { force: boolean; published: ReadonlySet<string>; full?: boolean },
): Promise<DateStart> {
  if (options.published.has(date) && !options.force) return { date, skipped: 'published' };
  const latest = await latestRun(pool, job.name, date);
  if (latest && (latest.status === 'running' || latest.status === 'finalizing'))
    return { date, runId: latest.id, how: 'followed' };
  // Held for review: not retried as if it had failed (runs approve / runs reject decide it).
  if (latest?.status === 'held' && !options.force) return { date, skipped: 'held' };
  if (latest?.status === 'failed') {
    // A failed run whose predictions were already dropped cannot resume: plan a new one.
    const retried = await retryRun(pool, latest.id).catch(() => undefined);
    if (retried) return { date, runId: retried.id, how: 'retried' };
  }
  try {
    return { date, runId: (await planRun(pool, job, date, 'backfill', { full: options.full })).runId, how: 'planned' };
  } catch (err) {
    if (err instanceof ActiveRunError) return { date, runId: err.runId, how: 'followed' };
    if (err instanceof NoRowsError) return { date, skipped: 'no rows' };
    throw err;
  }
}

export async function publishedSet(pool: Pool, job: string): Promise<Set<string>> {
  return new Set(await publishedDates(pool, job));
}

/** What a backfill would do per date: rows, chunks and the action. */
export async function backfillPlan(
  pool: Pool,
  job: ResolvedJob,
  dates: string[],
  options: { force: boolean; published: ReadonlySet<string> },
): Promise<{ date: string; rows: number; chunks: number; action: string }[]> {
  const plan = [];
  for (const date of dates) {
    const rows = await countSourceRows(pool, job, date);
    const action = rows === 0 ? 'skip (no rows)' : options.published.has(date) && !options.force ? 'skip (published)' : 'run';
    plan.push({ date, rows, chunks: rows === 0 ? 0 : Math.ceil(rows / job.spec.chunkRows), action });
  }
  return plan;
}
