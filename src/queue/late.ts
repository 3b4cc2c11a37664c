import crypto from 'node:crypto';
import type { Job, Queue, Worker } from 'bullmq';
import type { Config } from '../config.js';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { lateDone, lockServedRun, storeLate, type LateOutcome } from '../db/sql/late.js';
import { errorMessage } from '../errors.js';
import type { InferencePool } from '../inference/pool.js';
import type { Logger } from '../log.js';
import type { WorkerMetrics } from '../metrics/worker.js';
import { readMissingKeys, scoreRunKeys, type KeyOutcome } from '../score/keyed.js';
import { PinnedRuns } from '../score/pinned.js';
import { LATE_QUEUE, type QueueBackend } from './connection.js';

/**
 * Enqueue on miss (`serving.onMiss: "enqueue"`): the API puts each key a served run lacks on
 * this queue, once per (run, key), and any `prescore worker` scores it with the run's pinned
 * model and stores it in prescore.late_predictions for that run.
 */
export { LATE_QUEUE };

export interface LateJobData {
  runId: string;
  job: string;
  key: string;
}

/**
 * One job id per (run, key), so a key asked for 100 times while it waits is one job. The key is
 * hashed: BullMQ refuses ids with ':' or that read as integers, and a key may be 512 bytes of
 * any text. The job is removed once done (its answer is in the table; a key read before the
 * answer committed and enqueued again is skipped by the worker), and when it fails for good
 * (the next read enqueues it again).
 */
export function lateJobId(runId: string, key: string): string {
  return `late-${runId}-${crypto.createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
}

export const LATE_ATTEMPTS = 5;

export function lateJob(data: LateJobData) {
  return {
    name: 'late',
    data,
    opts: {
      jobId: lateJobId(data.runId, data.key),
      attempts: LATE_ATTEMPTS,
      backoff: { type: 'exponential', delay: 500 },
      removeOnComplete: true,
      removeOnFail: true,
    },
  };
}

/** Keys waiting or being scored on the late queue. */
export async function lateBacklog(queue: Queue): Promise<number> {
  const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
  return Object.values(c).reduce((a, b) => a + b, 0);
}

/** The worker of the late queue, in every `prescore worker`, on the chunk workers' inference threads. */
export function startLateWorker(
  pool: Pool,
  backend: QueueBackend,
  config: Config,
  log: Logger,
  inference: InferencePool,
  concurrency: number,
  metrics?: WorkerMetrics,
): Worker {
  const runs = new PinnedRuns(pool);
  const worker = backend.worker(
    LATE_QUEUE,
    async (job: Job<LateJobData>) => {
      const { runId, key } = job.data;
      try {
        const outcome = await scoreLate(pool, runs, inference, runId, key);
        log.debug({ runId, key, outcome, pid: process.pid }, 'late key scored');
        metrics?.late(job.data.job, outcome);
        return { outcome };
      } catch (err) {
        log.warn({ runId, key, attempt: job.attemptsMade + 1, err: errorMessage(err) }, 'scoring a late key failed');
        throw err;
      }
    },
    { concurrency, lockSeconds: config.lockSeconds },
  );
  worker.on('error', (err) => log.warn({ err: errorMessage(err) }, 'late queue worker error'));
  return worker;
}

/**
 * Scores one key of a served run as the run would have: the run's rejects first, then its row
 * of the run's date from the source (a READ ONLY transaction), the run's pinned model; stored
 * with a NOTIFY in one transaction that holds the run's serving row, so nothing is stored for a
 * run a publish has replaced meanwhile (the API enqueues the key again for the new run).
 */
export async function scoreLate(
  pool: Pool,
  runs: PinnedRuns,
  inference: InferencePool,
  runId: string,
  key: string,
): Promise<LateOutcome> {
  const run = await runs.get(runId);
  if (!run) return 'gone';
  // A retry after a crash that committed, or a key enqueued again as its answer committed.
  if (await lateDone(pool, runId, key)) return 'skipped';
  const outcomes = new Map<string, KeyOutcome>();
  let client: PoolClient | undefined = await pool.connect();
  let read;
  try {
    await client.query('BEGIN TRANSACTION READ ONLY');
    read = await readMissingKeys(client, run, [key], outcomes);
    await client.query('ROLLBACK');
  } catch (err) {
    client.release(err instanceof Error ? err : new Error(String(err)));
    client = undefined;
    throw err;
  } finally {
    client?.release();
  }
  const m = await run.model();
  await scoreRunKeys(inference, m, read, outcomes);
  const o = outcomes.get(key);
  const result =
    o === undefined
      ? {
          score: null,
          label: null,
          outputs: null,
          rejected: `no row for key "${key}" in the source on ${run.date}`,
          absent: true,
        }
      : 'row' in o
        ? { ...o.row, rejected: null, absent: false }
        : { score: null, label: null, outputs: null, rejected: o.rejected, absent: false };
  const stored = await withTransaction(pool, async (tx) => {
    if (!(await lockServedRun(tx, runId))) return false;
    await storeLate(tx, runId, key, result, { name: m.name, version: m.version });
    return true;
  });
  if (!stored) return 'gone';
  return result.absent ? 'absent' : result.rejected !== null ? 'rejected' : 'scored';
}
