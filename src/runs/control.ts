import { setTimeout as sleep } from 'node:timers/promises';
import { InputError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pool } from '../db/pool.js';
import { getRun, partitionName, type RunInfo } from './store.js';

export const TERMINAL = new Set(['published', 'superseded', 'failed', 'cancelled']);

/**
 * Makes a failed run runnable again: its done chunks stay done, the rest run anew (with fresh
 * queue job ids: the attempt number is part of them). Refused while another run of the same
 * (job, date) is active.
 */
export async function retryRun(pool: Pool, runId: string): Promise<RunInfo> {
  const run = await getRun(pool, runId);
  if (!run) throw new InputError(`run ${runId} does not exist: see prescore runs list`);
  if (run.status !== 'failed') throw new InputError(`run ${runId} is ${run.status}; only a failed run can be retried`);
  const table = await pool.query(`SELECT to_regclass($1) AS t`, [`prescore.${partitionName(runId)}`]);
  if (!table.rows[0].t) {
    throw new InputError(`run ${runId}'s predictions were dropped (a newer run was published); run the date again instead`);
  }
  try {
    await pool.query(
      `UPDATE prescore.runs SET status = 'running', error = NULL, finished_at = NULL, attempt = attempt + 1,
              enqueued_at = NULL, heartbeat_at = now()
        WHERE id = $1::bigint AND status = 'failed'`,
      [runId],
    );
  } catch (err) {
    if ((err as { code?: string }).code === '23505') {
      throw new InputError(`job ${run.job} already has an active run for ${run.date}; cancel it before retrying run ${runId}`);
    }
    throw err;
  }
  await pool.query(`UPDATE prescore.run_chunks SET error = NULL WHERE run_id = $1::bigint AND status <> 'done'`, [runId]);
  return (await getRun(pool, runId))!;
}

/** Stops a run without publishing it; workers skip its remaining chunks. */
export async function cancelRun(pool: Pool, runId: string, log: Logger): Promise<RunInfo> {
  const res = await pool.query(
    `UPDATE prescore.runs SET status = 'cancelled', error = 'cancelled', finished_at = now()
      WHERE id = $1::bigint AND status IN ('running', 'finalizing', 'failed')`,
    [runId],
  );
  const run = await getRun(pool, runId);
  if (!run) throw new InputError(`run ${runId} does not exist: see prescore runs list`);
  if (res.rowCount === 0) throw new InputError(`run ${runId} is ${run.status}; only a running or failed run can be cancelled`);
  // Best effort: a chunk still writing holds the table; dropExpired removes it later then.
  await pool
    .query(`SET lock_timeout = '2s'; DROP TABLE IF EXISTS prescore.${partitionName(runId)}; RESET lock_timeout`)
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
