import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import { queueBackend } from '../queue/connection.js';
import { enqueueRun } from '../queue/flows.js';

/** Enqueues runs through a FlowProducer that lives for the duration of `fn`. */
export async function withEnqueuer<T>(
  config: Config,
  db: Database,
  fn: (enqueue: (runId: string) => Promise<boolean>) => Promise<T>,
): Promise<T> {
  const producer = queueBackend(config, db.url).flowProducer();
  try {
    return await fn((runId) => enqueueRun(db.pool, producer, runId));
  } finally {
    await producer.close();
  }
}
