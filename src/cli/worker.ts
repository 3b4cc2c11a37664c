import type { Command } from 'commander';
import { queueBackend } from '../queue/connection.js';
import { startWorker } from '../queue/worker.js';
import { withContext } from './context.js';
import { integer } from './options.js';
import { untilSignal } from './service.js';

export function workerCommands(program: Command): void {
  program
    .command('worker')
    .description('score chunks and finalize runs from the queue (Redis, or PostgreSQL without REDIS_URL)')
    .option(
      '--concurrency <n>',
      'chunks in flight in this process, 1 to 256 (default: PRESCORE_CHUNK_CONCURRENCY)',
      integer('--concurrency', 1, 256),
    )
    .action(async (opts: { concurrency?: number }) => {
      await withContext(
        async ({ config, db, log }) => {
          const concurrency = opts.concurrency ?? config.chunkConcurrency;
          const worker = await startWorker(db.pool, queueBackend(config, db.url), config, log, concurrency);
          await untilSignal(log, () => worker.close());
        },
        { dispatch: true },
      );
    });
}
