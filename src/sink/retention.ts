import type { Pool } from '../db/pool.js';
import { dropPartition } from '../db/sql/partitions.js';
import { deleteLate } from '../db/sql/late.js';
import { deleteRejects } from '../db/sql/rejects.js';
import { endedRuns, expiredRuns, supersedeDate } from '../db/sql/runs.js';
import { notifyPublished, removeOldDates } from '../db/sql/serving.js';
import type { Logger } from '../log.js';

/**
 * Retention by count, after each publish: of (job, date), the published and superseded runs
 * beyond `keepRuns` go, and so do failed and cancelled runs older than the one now serving.
 */
export async function dropExpired(pool: Pool, job: string, date: string, keepRuns: number, log: Logger): Promise<void> {
  await dropRuns(pool, await expiredRuns(pool, job, date, keepRuns), log);
}

/**
 * Retention by age: dates older than the job's newest published date minus retainDays stop
 * being served (their pointers are removed first, in one statement) and their runs' tables go.
 */
export async function dropOldDates(pool: Pool, job: string, retainDays: number, log: Logger): Promise<void> {
  const dates = await removeOldDates(pool, job, retainDays);
  if (dates.length === 0) return;
  // Readers (the API's pointer cache) reload the job's pointers on this notification.
  await notifyPublished(pool, job, null, null);
  for (const date of dates) {
    await supersedeDate(pool, job, date);
    // Not a run still in flight for that date (a backfill): it finishes, and a later publish drops it.
    await dropRuns(pool, await endedRuns(pool, job, date), log);
    log.info({ job, date, retainDays }, 'date past retention dropped');
  }
}

/** Drops runs' predictions tables (detached first if attached), their reject rows and late arrivals. */
async function dropRuns(pool: Pool, ids: string[], log: Logger): Promise<void> {
  for (const id of new Set(ids)) {
    await dropPartition(pool, id);
    await deleteRejects(pool, id);
    await deleteLate(pool, id);
    log.debug({ runId: id }, 'dropped expired run predictions');
  }
}
