import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import { NoWorkerError, QueueError, errorMessage } from '../errors.js';
import { CHUNK_QUEUE, queueBackend, type QueueBackend } from '../queue/connection.js';
import { enqueueRun } from '../queue/flows.js';

const PROBE_TIMEOUT_MS = 5_000;

/**
 * How long a command that follows a queued run gives a worker to show up before it says none
 * listens: long enough for a worker started at the same moment to connect, short enough that
 * nobody stares at a progress bar at 0%.
 */
export const NO_WORKER_GRACE_MS = 3_000;
const WORKER_POLL_MS = 250;

export interface WorkerCheck {
  /** Keep following the run when no worker listens (say so once) instead of failing. */
  waitForWorkers: boolean;
}

/**
 * Enqueues runs through a FlowProducer that lives for the duration of `fn`. The queue must
 * answer first: a command never plans a run it then cannot hand to the workers, and never
 * hangs on an unreachable Redis. With `workers`, the first enqueue also checks that a worker
 * listens on the queue (NoWorkerError otherwise; the run stays queued).
 */
export async function withEnqueuer<T>(
  config: Config,
  db: Database,
  fn: (enqueue: (runId: string) => Promise<boolean>) => Promise<T>,
  workers?: WorkerCheck,
): Promise<T> {
  const backend = queueBackend(config, db.url);
  try {
    await backend.probe(PROBE_TIMEOUT_MS);
  } catch (err) {
    throw new QueueError(`cannot reach the queue (${backend.describe}): ${errorMessage(err)}; is REDIS_URL right and Redis up?`, {
      cause: err,
    });
  }
  const producer = backend.flowProducer();
  let checked: Promise<void> | undefined;
  try {
    return await fn(async (runId) => {
      const enqueued = await enqueueRun(db.pool, producer, runId);
      if (workers) await (checked ??= checkWorkers(backend, runId, workers));
      return enqueued;
    });
  } finally {
    await producer.close();
  }
}

/** Waits up to NO_WORKER_GRACE_MS for a worker on the chunk queue; then fails, or says so once and returns. */
async function checkWorkers(backend: QueueBackend, runId: string, check: WorkerCheck): Promise<void> {
  const queue: Queue = backend.queue(CHUNK_QUEUE);
  queue.on('error', () => undefined); // a connection error shows in the count below
  try {
    const deadline = Date.now() + NO_WORKER_GRACE_MS;
    for (;;) {
      const count = await backend.workerCount(queue);
      if (count === null || count > 0) return;
      if (Date.now() >= deadline) break;
      await sleep(WORKER_POLL_MS);
    }
  } finally {
    await queue.close();
  }
  const env = backend.kind === 'redis' ? 'DATABASE_URL and REDIS_URL' : 'DATABASE_URL (and no REDIS_URL)';
  const what = `no worker is listening on queue ${CHUNK_QUEUE} (${backend.describe}); start one with \`prescore worker\` with the same ${env}`;
  if (!check.waitForWorkers)
    throw new NoWorkerError(
      `${what}. Run ${runId} stays queued: a worker started later does it (--wait-for-workers to keep waiting)`,
    );
  process.stderr.write(`${what}; waiting for one (--wait-for-workers)\n`);
}
