import { Registry, collectDefaultMetrics } from 'prom-client';
import { createPool } from '../db/pool.js';
import type { Logger } from '../log.js';
import { CHUNK_QUEUE, FINALIZE_QUEUE, LATE_QUEUE, type QueueBackend } from '../queue/connection.js';
import { ClusterGauges, clusterReader, type ClusterOptions } from './cluster.js';
import { WorkerMetrics } from './worker.js';

export interface RoleMetrics {
  registry: Registry;
  /** The worker's counters (undefined for a scheduler). */
  worker: WorkerMetrics | undefined;
  close(): Promise<void>;
}

/**
 * The registry of a `prescore worker` or `prescore scheduler`: process metrics, the cluster
 * gauges (read from the database and the queue at scrape time) and, for a worker, what it
 * counts as it works. The gauges read over a connection of their own, so a scrape never waits
 * behind the chunks for one of the worker's connections, nor holds one.
 */
export function roleMetrics(
  role: 'worker' | 'scheduler',
  databaseUrl: string,
  backend: QueueBackend,
  log: Logger,
  options: ClusterOptions = {},
): RoleMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'prescore_' });
  const pool = createPool(databaseUrl, log, 1, 5000, { applicationName: 'prescore-metrics', statementTimeoutMs: 5000 });
  const queues = [backend.queue(CHUNK_QUEUE), backend.queue(FINALIZE_QUEUE), backend.queue(LATE_QUEUE)];
  // A queue that does not answer shows as prescore_cluster_read_ok 0; its errors are not news.
  for (const q of queues) q.on('error', (err) => log.debug({ err: err.message }, 'metrics: queue error'));
  new ClusterGauges(registry, clusterReader(pool, queues), log, options);
  let closing: Promise<void> | undefined;
  return {
    registry,
    worker: role === 'worker' ? new WorkerMetrics(registry) : undefined,
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled(queues.map((q) => q.close()));
        await pool.end().catch(() => undefined);
      })()),
  };
}
