import { withTransaction, type Pool } from '../db/pool.js';
import { attachPartition } from '../db/sql/partitions.js';
import { carryLate } from '../db/sql/late.js';
import { runRef } from '../db/sql/layers.js';
import { lockRun, markPublished, markSuperseded } from '../db/sql/runs.js';
import { notifyPublished, swapPointer } from '../db/sql/serving.js';
import { replaceFeatureStats, type FeatureSummary } from '../db/sql/stats.js';
import { RunError } from '../errors.js';

export interface Publication {
  runId: string;
  job: string;
  date: string;
  totals: { read: number; written: number; rejected: number };
  features: FeatureSummary[];
}

/**
 * Makes a finalizing run the one that answers for its (job, date), in ONE transaction: attach
 * its table as a partition, store its feature stats, swap the serving pointer, mark the old
 * run superseded and this one published, carry the old run's late arrivals for the keys this
 * run lacks (serving.onMiss "enqueue"), NOTIFY readers. Until that commit readers see the
 * previous run. Returns the run it replaced, or 'already' when a racing finalize of the same
 * run published it first (nothing to do).
 */
export async function publishRun(pool: Pool, p: Publication): Promise<string | undefined | 'already'> {
  return withTransaction(pool, async (client) => {
    const status = await lockRun(client, p.runId);
    if (status === 'published') return 'already';
    if (status !== 'finalizing') {
      throw new RunError(
        p.runId,
        `job ${p.job} ${p.date}: run ${p.runId} was ${status ?? 'deleted'} while finalizing; not published`,
      );
    }
    await attachPartition(client, p.runId);
    await replaceFeatureStats(client, p.runId, p.features);
    const previous = await swapPointer(client, p.job, p.date, p.runId);
    if (previous) {
      await markSuperseded(client, previous);
      await carryLate(client, previous, await runRef(client, p.runId));
    }
    await markPublished(client, p.runId, p.totals);
    await notifyPublished(client, p.job, p.date, p.runId);
    return previous;
  });
}
