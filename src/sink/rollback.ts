import { withTransaction, type Pool } from '../db/pool.js';
import {
  insertRollback,
  keptRuns,
  lockServing,
  markRolledBack,
  publishedRuns,
  runRow,
  type RollbackRecord,
} from '../db/sql/rollbacks.js';
import { runRef } from '../db/sql/layers.js';
import { partitionExists } from '../db/sql/partitions.js';
import { activeRunId, claimedForDrop } from '../db/sql/runs.js';
import { newestPublishedDates, notifyPublished, swapPointer } from '../db/sql/serving.js';
import { InputError } from '../errors.js';

export interface RollbackRequest {
  job: string;
  /** Default: the job's newest served date (or, with `to`, that run's date). */
  date?: string;
  /** The run to serve; default the newest kept run older than the one serving now. */
  to?: string;
  by: string;
  reason: string | null;
}

export type RollbackResult =
  (RollbackRecord & { changed: true; activeRun: string | null }) | { changed: false; job: string; date: string; to: string };

const PUBLISHED = new Set(['published', 'superseded']);

/**
 * Points serving of (job, date) back at an older kept run, in ONE transaction with the NOTIFY
 * a publish sends, so readers switch within a second: the serving row is locked first (a
 * publish racing this one waits, then replaces it as any later publish does), the target is
 * checked to be a published run whose predictions are still attached (a layer's base's too),
 * and the rollback is recorded (who, when, from, to, why). Refuses, changing nothing, when there is no such run.
 */
export async function rollbackServing(pool: Pool, req: RollbackRequest): Promise<RollbackResult> {
  const result = await withTransaction(pool, async (client): Promise<RollbackResult> => {
    let date = req.date;
    if (req.to !== undefined) {
      const target = await runRow(client, req.to);
      if (!target) throw new InputError(`run ${req.to} does not exist: see prescore runs list --job ${req.job}`);
      if (target.job !== req.job) {
        throw new InputError(`run ${req.to} is a run of job ${target.job}, not ${req.job}: name a run of ${req.job} with --to`);
      }
      if (date !== undefined && target.date !== date) {
        throw new InputError(`run ${req.to} scored ${req.job} ${target.date}, not ${date}: drop --date or name a run of ${date}`);
      }
      date = target.date;
    }
    if (date === undefined) {
      date = (await newestPublishedDates(client, [req.job])).get(req.job);
      if (!date) throw new InputError(`job ${req.job} has no published date: nothing to roll back`);
    }
    const current = await lockServing(client, req.job, date);
    if (!current) throw new InputError(`job ${req.job} has no run serving ${date}: nothing to roll back`);

    let to = req.to;
    if (to === undefined) {
      const older = (await publishedRuns(client, req.job, date)).filter((id) => BigInt(id) < BigInt(current));
      const kept = await keptRuns(client, older);
      to = older.find((id) => kept.has(id));
      if (!to) {
        throw new InputError(
          `job ${req.job} ${date}: no kept run older than run ${current}, which serves it, to roll back to ` +
            `(older runs were never published or were dropped by retention, keepRuns); nothing changed`,
        );
      }
    } else if (to === current) {
      return { changed: false, job: req.job, date, to };
    }
    // Locked after the serving row, in the order a publish locks (a run, then the pointer) never
    // crosses: the run locked here is a published one, never the finalizing run a publish holds.
    const target = (await runRow(client, to, true))!;
    if (!PUBLISHED.has(target.status)) {
      throw new InputError(
        `run ${to} is ${target.status}: only a run that was published can serve ${req.job} ${date} again; nothing changed`,
      );
    }
    // Retention may have claimed it after choosing it (its tables about to go; claimDrop).
    if (!(await keptRuns(client, [to])).has(to) || (await claimedForDrop(client, to))) {
      const base = (await runRef(client, to)).baseRunId;
      if (base && (await partitionExists(client, to)) && !(await keptRuns(client, [base])).has(base)) {
        throw new InputError(
          `run ${to} stores only part of its predictions and reads the rest from run ${base}, whose predictions were dropped: ` +
            `it cannot serve ${req.job} ${date} again; see prescore runs list --job ${req.job} for the kept runs; nothing changed`,
        );
      }
      throw new InputError(
        `run ${to}'s predictions were dropped by retention (keepRuns, retainDays): it cannot serve ${req.job} ${date} again; ` +
          `see prescore runs list --job ${req.job} for the kept runs; nothing changed`,
      );
    }
    await swapPointer(client, req.job, date, to);
    await markRolledBack(client, current, to);
    const record = await insertRollback(client, { job: req.job, date, from: current, to, by: req.by, reason: req.reason });
    await notifyPublished(client, req.job, date, to);
    return { ...record, changed: true, activeRun: null };
  });
  if (result.changed) result.activeRun = (await activeRunId(pool, req.job, result.date)) ?? null;
  return result;
}
