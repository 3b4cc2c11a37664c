import type { Command } from 'commander';
import { withContext } from './context.js';
import { metricsOptions, startMetrics, type MetricsFlags } from './metrics.js';
import { integer } from './options.js';
import { untilSignal } from './service.js';

export function workerCommands(program: Command): void {
  const command = program
    .command('worker')
    .description(
      'score chunks, finalize runs and score late keys (serving.onMiss enqueue) from the queue (Redis, or PostgreSQL without REDIS_URL)',
    )
    .option(
      '--concurrency <n>',
      'chunks in flight in this process, 1 to 256 (default: PRESCORE_CHUNK_CONCURRENCY)',
      integer('--concurrency', 1, 256),
    );
  metricsOptions(command).action(async (opts: { concurrency?: number } & MetricsFlags) => {
    const { queueBackend } = await import('../queue/connection.js');
    const { startWorker } = await import('../queue/worker.js');
    await withContext(
      async ({ config, db, log }) => {
        const concurrency = opts.concurrency ?? config.chunkConcurrency;
        const backend = queueBackend(config, db.url);
        const metrics = await startMetrics('worker', opts, db.url, backend, log);
        try {
          const worker = await startWorker(db.pool, backend, config, log, concurrency, metrics.metrics?.worker);
          // /metrics keeps answering while the worker drains.
          await untilSignal(log, () => worker.close());
        } finally {
          await metrics.close();
        }
      },
      { dispatch: true },
    );
  });
}
