import { withTransaction, type Pool } from '../db/pool.js';
import { deleteMasks } from '../db/sql/layers.js';
import { dropPartition } from '../db/sql/partitions.js';
import { deleteLate } from '../db/sql/late.js';
import { deleteRejects } from '../db/sql/rejects.js';
import { claimDrop, endedRuns, expiredRuns, markKeptAsBase, releasedBases, supersedeDate } from '../db/sql/runs.js';
import { notifyPublished, removeOldDates } from '../db/sql/serving.js';
import type { Logger } from '../log.js';

/**
 * Retention by count, after each publish: of (job, date), the published and superseded runs
 * beyond `keepRuns` go, and so do failed and cancelled runs older than the one now serving.
 */
export async function dropExpired(pool: Pool, job: string, date: string, keepRuns: number, log: Logger): Promise<void> {
  await dropRuns(pool, job, await expiredRuns(pool, job, date, keepRuns), log);
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
    await dropRuns(pool, job, await endedRuns(pool, job, date), log);
    log.info({ job, date, retainDays }, 'date past retention dropped');
  }
}

/**
 * After a layer's table was dropped outside retention (a cancelled or rejected run): its mask
 * goes, and so does its base if retention kept it only for layers and none is left.
 */
export async function releaseLayer(pool: Pool, job: string, runId: string, log: Logger): Promise<void> {
  await deleteMasks(pool, runId);
  await dropReleasedBases(pool, job, log);
}

/**
 * Drops runs' predictions tables (detached first if attached), their reject rows, late arrivals
 * and masks. Except a run a layer still reads through to (layers.ts): dropping it would take
 * from the layer every key it did not store, so it is kept (runs.kept_as_base) and goes with
 * the last such layer, when no pointer serves it.
 */
async function dropRuns(pool: Pool, job: string, ids: string[], log: Logger): Promise<void> {
  for (const id of new Set(ids)) {
    const { layers, serving } = await withTransaction(pool, (client) => claimDrop(client, id));
    if (serving) {
      log.debug({ job, runId: id }, 'expired run kept: a pointer serves it again (a rollback)');
      continue;
    }
    if (layers.length > 0) {
      if (await markKeptAsBase(pool, id)) {
        log.info({ job, runId: id, layers }, 'expired run kept: layered runs read through to it; it goes with the last of them');
      }
      continue;
    }
    await dropRun(pool, id);
    log.debug({ runId: id }, 'dropped expired run predictions');
  }
  await dropReleasedBases(pool, job, log);
}

/** Base runs kept for layers that are all gone now: dropped like any expired run. */
async function dropReleasedBases(pool: Pool, job: string, log: Logger): Promise<void> {
  for (const id of await releasedBases(pool, job)) {
    // A plan may have made a layer on it since: the claim looks again with the run locked.
    const claim = await withTransaction(pool, (client) => claimDrop(client, id));
    if (claim.layers.length > 0 || claim.serving) continue;
    await dropRun(pool, id);
    log.info({ job, runId: id }, 'kept base run dropped: no layered run reads through to it any more');
  }
}

async function dropRun(pool: Pool, id: string): Promise<void> {
  await dropPartition(pool, id);
  await deleteRejects(pool, id);
  await deleteLate(pool, id);
  await deleteMasks(pool, id);
}
