import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import { QueueError, errorMessage } from '../errors.js';
import { queueBackend } from '../queue/connection.js';
import { enqueueRun } from '../queue/flows.js';

const PROBE_TIMEOUT_MS = 5_000;

/**
 * Enqueues runs through a FlowProducer that lives for the duration of `fn`. The queue must
 * answer first: a command never plans a run it then cannot hand to the workers, and never
 * hangs on an unreachable Redis.
 */
export async function withEnqueuer<T>(
  config: Config,
  db: Database,
  fn: (enqueue: (runId: string) => Promise<boolean>) => Promise<T>,
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
  try {
    return await fn((runId) => enqueueRun(db.pool, producer, runId));
  } finally {
    await producer.close();
  }
}
