import os from 'node:os';
import type { Pool } from '../db/pool.js';
import { chunkTotals } from '../db/sql/chunks.js';
import { dropPartitionNow } from '../db/sql/partitions.js';
import { runProfile } from '../db/sql/profiles.js';
import { getRun, type RunInfo } from '../db/sql/run-info.js';
import { markReviewed, runForFinalize } from '../db/sql/runs.js';
import { loadPointer } from '../db/sql/serving.js';
import { InputError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ColumnProfile } from '../profile/profile.js';
import { releaseLayer } from '../sink/retention.js';
import { publish } from './finalize.js';

/** Who reviews: `--by`, else the operating-system user. */
export function reviewer(by: string | undefined): string {
  if (by?.trim()) return by.trim();
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

async function heldRun(pool: Pool, runId: string): Promise<RunInfo> {
  const run = await getRun(pool, runId);
  if (!run) throw new InputError(`run ${runId} does not exist: see prescore runs list`);
  if (run.status !== 'held') throw new InputError(`run ${runId} is ${run.status}; only a held run can be approved or rejected`);
  return run;
}

/**
 * Publishes a held run: a person looked at its report and decided the drift is real (a new
 * season, a fixed upstream bug). Recorded with who, when and why. Refused when a newer run of
 * the same date was published meanwhile (approving would put older predictions back).
 */
export async function approveRun(
  pool: Pool,
  runId: string,
  review: { by: string; reason: string },
  log: Logger,
): Promise<RunInfo> {
  const run = await heldRun(pool, runId);
  const serving = await loadPointer(pool, run.job, run.date);
  if (serving && BigInt(serving.runId) > BigInt(runId)) {
    throw new InputError(
      `run ${runId} is older than run ${serving.runId}, which serves ${run.job} ${run.date} now; reject it instead`,
    );
  }
  if (!(await markReviewed(pool, runId, { approved: true, by: review.by, reason: review.reason }))) await heldRun(pool, runId);
  const info = await runForFinalize<{ spec: { keepRuns: number; retainDays?: number } }>(pool, runId);
  const profile = await runProfile<ColumnProfile[]>(pool, runId);
  const t = await chunkTotals(pool, runId);
  await publish(pool, log, {
    runId,
    job: run.job,
    date: run.date,
    totals: t,
    profiles: profile?.columns ?? [],
    keepRuns: info!.spec.spec.keepRuns,
    retainDays: info!.spec.spec.retainDays,
  });
  log.info({ runId, job: run.job, date: run.date, by: review.by, reason: review.reason }, 'held run approved and published');
  return (await getRun(pool, runId))!;
}

/** Drops a held run for good: the previous run keeps serving. */
export async function rejectRun(
  pool: Pool,
  runId: string,
  review: { by: string; reason: string | null },
  log: Logger,
): Promise<RunInfo> {
  const run = await heldRun(pool, runId);
  if (!(await markReviewed(pool, runId, { approved: false, by: review.by, reason: review.reason }))) await heldRun(pool, runId);
  await dropPartitionNow(pool, runId)
    // A rejected layer no longer holds its base (retention drops a base kept for it).
    .then(() => releaseLayer(pool, run.job, runId, log))
    .catch((err: unknown) => log.warn({ runId, err: String(err) }, 'rejected run: its table is dropped later'));
  log.info({ runId, by: review.by }, 'held run rejected');
  return (await getRun(pool, runId))!;
}
