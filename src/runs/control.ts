import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from '../db/pool.js';
import { clearChunkErrors } from '../db/sql/chunks.js';
import { dropPartitionNow, partitionExists } from '../db/sql/partitions.js';
import { TERMINAL, markCancelled, reopenFailedRun } from '../db/sql/runs.js';
import { getRun, type RunInfo } from '../db/sql/run-info.js';
import { InputError } from '../errors.js';
import type { Logger } from '../log.js';
import { releaseLayer } from '../sink/retention.js';

/**
 * Makes a failed run runnable again: its done chunks stay done, the rest run anew (with fresh
 * queue job ids: the attempt number is part of them). Refused while another run of the same
 * (job, date) is active.
 */
export async function retryRun(pool: Pool, runId: string): Promise<RunInfo> {
  const run = await getRun(pool, runId);
  if (!run) throw new InputError(`run ${runId} does not exist: see prescore runs list`);
  if (run.status !== 'failed') throw new InputError(`run ${runId} is ${run.status}; only a failed run can be retried`);
  if (!(await partitionExists(pool, runId))) {
    throw new InputError(`run ${runId}'s predictions were dropped (a newer run was published); run the date again instead`);
  }
  await reopenFailedRun(pool, run);
  await clearChunkErrors(pool, runId);
  return (await getRun(pool, runId))!;
}

/** Stops a run without publishing it; workers skip its remaining chunks. */
export async function cancelRun(pool: Pool, runId: string, log: Logger): Promise<RunInfo> {
  const changed = await markCancelled(pool, runId);
  const run = await getRun(pool, runId);
  if (!run) throw new InputError(`run ${runId} does not exist: see prescore runs list`);
  if (!changed) throw new InputError(`run ${runId} is ${run.status}; only a running or failed run can be cancelled`);
  // Best effort: a chunk still writing holds the table; retention removes it later then.
  await dropPartitionNow(pool, runId)
    // A cancelled layer no longer holds its base (retention drops a base kept for it).
    .then(() => releaseLayer(pool, run.job, runId, log))
    .catch((err: unknown) => log.warn({ runId, err: String(err) }, 'cancelled run: its table is dropped later'));
  return run;
}

/** Polls a run until it ends, reporting progress; returns its final state. */
export async function followRun(
  pool: Pool,
  runId: string,
  onUpdate: (run: RunInfo) => void = () => undefined,
  pollMs = 300,
): Promise<RunInfo> {
  for (;;) {
    const run = await getRun(pool, runId);
    if (!run) throw new InputError(`run ${runId} disappeared`);
    onUpdate(run);
    if (TERMINAL.has(run.status)) return run;
    await sleep(pollMs);
  }
}
